"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class MteError(Exception):
    """A user-facing error: bad input or a missing prerequisite, explained in one line."""
