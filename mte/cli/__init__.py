"""The `mte` command: the composition root, the one layer that imports everything (core, sweeps, tracking).

One module per command (run, sweep, report, tune-tau, ui); flags come from the option dataclasses through
`mte.cli.options`. `main` turns user errors into one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys

import typer
from rich.console import Console

from mte.cli import interrupts
from mte.cli.options import CLASHES, HelpCommand, plugin_args
from mte.errors import MteError, first_line


def _preload_plugins() -> MteError | None:
    """Load the plugins this process's command line names before the commands are declared, so that their
    parameters become flags (`mte.cli.options`); an error is kept to be reported as the command's one line."""
    from mte import plugins

    try:
        plugins.load(plugin_args(sys.argv[1:]))
    except MteError as e:
        return e
    return None


_plugin_error = _preload_plugins()

from mte.cli import import_store, report, run, sweep, tune_tau, ui  # noqa: E402  (after the plugins: their flags)

app = typer.Typer(
    help="Multi-Ticket Ensembles: ensembles of different winning tickets of one pretrained transformer.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for _name, _command in (("run", run.run), ("sweep", sweep.sweep), ("report", report.report),
                        ("tune-tau", tune_tau.tune_tau), ("ui", ui.ui), ("import", import_store.import_store)):
    app.command(_name, cls=HelpCommand)(_command)

console = Console(stderr=True)
# Typer vendors click; its exception base is found through a public class rather than a private module.
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _version(value: bool) -> None:
    if value:
        from tracking.provenance import versions

        v = versions()
        print(f"mte {v.pop('mte')} ({', '.join(f'{k} {x}' for k, x in v.items())})")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, metavar="",
                                       help="Print mte's version (and its main libraries') and exit.")) -> None:
    """Multi-Ticket Ensembles: ensembles of different winning tickets of one pretrained transformer."""


def main(args: list[str] | None = None) -> None:
    """Console entry point: bad input (ours or the option parser's) becomes one line on stderr and exit code 2;
    Ctrl-C and SIGTERM stop cleanly (a sweep's parent run is marked KILLED, Ray is stopped) with 130 and 143.
    The process then ends by Python's normal shutdown, whose thread-exit hooks stop the thread pools libraries
    leave running (e.g. MLflow's artifact uploads), so it exits once the command is done."""
    try:
        _main(args)
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    sys.exit(_flushed(code))


def _flushed(code: int) -> int:
    """Flush the output now, so that a reader gone away (`mte … | head`) costs exit code 1 instead of the
    interpreter's warning at exit; the closed stream is pointed at /dev/null, for what shutdown still writes."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    return code


def _main(args: list[str] | None) -> None:
    _warnings_as_lines()
    interrupts.record()
    terminated = _terminate_like_interrupt()
    try:
        if _plugin_error is not None:
            raise _plugin_error
        if CLASHES:
            raise MteError(CLASHES[0])
        if args is not None:
            from mte import plugins

            plugins.load(plugin_args(args))
        code = app(args=args, standalone_mode=False)
    except MteError as e:
        _error(str(e))
    except ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `mte` or `mte <command>` alone: the help
            e.show()
            sys.exit(0)
        _error(e.format_message() + _usage_hint(e))
    except KeyboardInterrupt:
        code = 130
    except Exception as e:
        if not _disk_full(e):
            raise
        _error(f"no space left on the device ({first_line(_disk_full(e))}): finished work is kept; free space and "
               "run the same command again")
    if code == 130:  # Typer turns Ctrl-C into exit code 130
        code = 143 if terminated else 130
        console.print(f"{'terminated' if terminated else 'interrupted'}: finished work is kept (store and MLflow); "
                      "run the same command again to continue", highlight=False, soft_wrap=True)
    sys.exit(code if isinstance(code, int) else 0)


def _terminate_like_interrupt() -> list[int]:
    """SIGTERM becomes SIGINT (so Ray Tune stops its trials gracefully, as on Ctrl-C); the list records it."""
    seen: list[int] = []

    def on_term(signum: int, frame: object) -> None:
        seen.append(signum)
        if session := sys.modules.get("sweeps.session"):  # a sweep's watch for a Ray stopped by the same signal
            session.TERMINATED.set()
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(signal.SIGINT, frame)  # e.g. Ray Tune's graceful stop
        else:  # the default, or SIGINT ignored (a background job): stop here as Ctrl-C would
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return seen


def _warnings_as_lines() -> None:
    """mte's own warnings (e.g. a damaged store entry moved aside) as one line each on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    log = logging.getLogger("mte")
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    # MLflow logs each database error with its traceback before raising it; the error itself becomes one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def _disk_full(e: BaseException | None) -> BaseException | None:
    """The innermost error in `e`'s chain that says a disk (or a quota, or the tracking database) is full, if any."""
    found, seen = None, set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
                s in str(e) for s in ("No space left on device", "Disk quota exceeded", "database or disk is full")):
            found = e
        e = e.__cause__ or e.__context__
    return found


def _error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(2)


def _usage_hint(e: Exception) -> str:
    ctx = getattr(e, "ctx", None)
    return f" (see: {ctx.command_path} --help)" if ctx is not None else ""
