"""`mte import`: a result store's finished seeds recorded into MLflow as one sweep (e.g. a store made by
`mte sweep --executor local` on a machine without a tracking server); importing again adds nothing."""

from __future__ import annotations

from pathlib import Path

import typer

from mte.cli.options import options
from tracking.options import TrackingOptions


@options(tracking=TrackingOptions)
def import_store(
    tracking: TrackingOptions,
    store: Path = typer.Option(..., "--store", metavar="PATH", help="The result store (its runs/ folder) to import."),
    sweep: str | None = typer.Option(None, "--sweep", metavar="HASH",
                                     help="The store's sweep to import, by (a prefix of) its hash, when it holds "
                                          "several."),
) -> None:
    """Record a store's finished seeds into MLflow as one sweep (parent and nested runs, as `mte sweep` writes
    them); seeds recorded already are skipped. `mte report` then reads it as usual."""
    from rich.console import Console

    from sweeps.importer import describe
    from sweeps.importer import import_store as run_import

    outcome = run_import(store, tracking, sweep)
    Console(stderr=True, soft_wrap=True).print(describe(outcome, tracking.experiment), highlight=False)
