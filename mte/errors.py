"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class MteError(Exception):
    """A user-facing error: bad input or a missing prerequisite, explained in one line."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none): for one-line errors that wrap
    a library's exception."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
