"""`mte sweep`: many seeds of many methods as Ray Tune trials recorded in MLflow; rerunning resumes."""

from __future__ import annotations

import typer
from rich.console import Console

from mte import fields
from mte.cli.options import Given, options
from mte.errors import MteError
from sweeps.options import SweepOptions
from sweeps.presets import PRESETS

console = Console(stderr=True)


@options(o=SweepOptions, exclude=("spec.method.method", "spec.seed"))
def sweep(
    o: SweepOptions,
    given: Given,
    preset: str | None = typer.Option(None, "--preset", metavar="[" + "|".join(PRESETS) + "]",
                                      help="Named option set (sweeps/presets.py), e.g. 'quick': MiniLM, 3 seeds, a "
                                           "real MRPC subset. Options given here still win."),
    resume: bool = typer.Option(False, "--resume", help="Continue the experiment's latest sweep with its "
                                                        "recorded options (options given here still win)."),
) -> None:
    """Run many seeds of many methods as Ray Tune trials, recorded in MLflow; rerunning resumes."""
    from sweeps.presets import preset as preset_options
    from sweeps.report import ReportOptions, run_report
    from sweeps.runner import run_sweep

    o = fields.overlay(_recorded(o) if resume else preset_options(preset), o, given["o"])
    outcome = run_sweep(o)
    if outcome.interrupted:
        raise KeyboardInterrupt
    if outcome.failed:
        raise typer.Exit(1)
    if o.report and o.seeds < 2:
        console.print("report: skipped (ensembles need at least 2 seeds)")
    elif o.report:
        run_report(o.tracking.experiment, outcome.tracking_uri,
                   ReportOptions(run_id=outcome.parent_run_id, out=o.report_dir / outcome.sweep_hash),
                   methods=o.methods, seeds=o.seeds)
    console.print(f"browse: mte ui --tracking-uri {outcome.tracking_uri}", highlight=False)


def _recorded(o: SweepOptions) -> SweepOptions:
    """The options of the experiment's latest sweep (tracking and Ray options stay as given)."""
    from tracking.experiment import find_parent, recorded_config
    from tracking.uri import check_reachable, resolve_tracking_uri

    client = check_reachable(resolve_tracking_uri(o.tracking.tracking_uri))
    exp = client.get_experiment_by_name(o.tracking.experiment)
    parent = find_parent(client, exp.experiment_id) if exp else None
    if parent is None:
        raise MteError(f"--resume: experiment {o.tracking.experiment!r} has no sweep to resume")
    recorded = SweepOptions.from_recorded(recorded_config(parent))
    return fields.build(SweepOptions, {("tracking",): o.tracking, ("ray",): o.ray}, recorded)
