"""The `mte` command: the composition root, the one layer that imports everything (core, sweeps, tracking).

One module per command (run, sweep, report, tune-tau, ui); flags come from the option dataclasses through
`mte.cli.options`. `main` turns user errors into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from mte.cli import report, run, sweep, tune_tau, ui
from mte.errors import MteError

app = typer.Typer(
    help="Multi-Ticket Ensembles: ensembles of different winning tickets of one pretrained transformer.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
app.command("run")(run.run)
app.command("sweep")(sweep.sweep)
app.command("report")(report.report)
app.command("tune-tau")(tune_tau.tune_tau)
app.command("ui")(ui.ui)

console = Console(stderr=True)
# Typer vendors click; its exception base is found through a public class rather than a private module.
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


@app.callback()
def _root() -> None:
    """Multi-Ticket Ensembles: ensembles of different winning tickets of one pretrained transformer."""


def main(args: list[str] | None = None) -> None:
    """Console entry point: bad input (ours or the option parser's) becomes one line on stderr and exit code 2."""
    try:
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
    if code == 130:  # Typer turns Ctrl-C into exit code 130
        console.print("interrupted; finished work is kept in the store")
    sys.exit(code if isinstance(code, int) else 0)


def _error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(2)


def _usage_hint(e: Exception) -> str:
    ctx = getattr(e, "ctx", None)
    return f" (see: {ctx.command_path} --help)" if ctx is not None else ""
