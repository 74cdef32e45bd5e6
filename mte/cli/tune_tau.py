"""`mte tune-tau`: search τ for a method that uses it (active-lt, random-lt, a plugin's) with Ray Tune + ASHA; the best
τ is recorded in MLflow."""

from __future__ import annotations

import typer

from mte.cli import interrupts
from mte.cli.options import options
from sweeps.options import TauOptions


@options(o=TauOptions, exclude=("spec.method.tau", "spec.data.holdout", "spec.method.bagging_fraction", "spec.seed"),
         plugins=True)
def tune_tau(o: TauOptions) -> None:
    """Search τ (log scale) for a method that uses it (active-lt, random-lt) with Ray Tune + ASHA; the best τ is
    recorded in MLflow."""
    from sweeps.tau_search import run_tuning

    interrupts.check()
    outcome = run_tuning(o)
    if outcome.best_tau is None or outcome.failed:
        raise typer.Exit(1)
