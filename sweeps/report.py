"""The hook from a finished sweep to the report stage (`mte.analysis`), whose output joins the parent run.

The results are read back from MLflow (not the local store), so the report shows exactly what was recorded.
The paper's protocol (2 groups of up to 5-member ensembles) needs 10 seeds; smaller sweeps (the quick
preset's 3) get one group and ensembles up to the number of seeds.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mte.cli_options import EXPERIMENT_OPTION, TRACKING_URI_OPTION
from mte.errors import MteError

console = Console(stderr=True)


def protocol(seeds: int) -> tuple[int, tuple[int, ...]]:
    """(groups, ensemble sizes) that `seeds` members per method can fill."""
    if seeds >= 10:
        return 2, (2, 3, 4, 5)
    return 1, tuple(range(2, min(seeds, 5) + 1))


def run_report(experiment: str, tracking_uri: str, parent_run_id: str, out: Path, methods: tuple[str, ...],
               seeds: int) -> Path | None:
    if seeds < 2:
        console.print("report: skipped (ensembles need at least 2 seeds)")
        return None
    from mte.analysis import ResultSet, build_report
    from tracking.load import load_sweep, log_report

    results = load_sweep(experiment, tracking_uri, parent_run_id)
    groups, sizes = protocol(seeds)
    summary = build_report(ResultSet.from_seed_results(results), out, groups=groups, sizes=sizes,
                           expected_seeds=range(seeds), expected_methods=methods)
    log_report(experiment, tracking_uri, out, parent_run_id)
    console.print(f"report: {summary.html} (also in the parent run's artifacts, report/)", highlight=False)
    return out


def report_command(
    experiment: str = EXPERIMENT_OPTION,
    tracking_uri: str | None = TRACKING_URI_OPTION,
    run_id: str | None = typer.Option(None, "--run-id", help="The sweep's parent run (default: the latest sweep)."),
    out: Path = typer.Option(Path("mte-report/report"), "--out", help="Folder for report.md/html, CSVs and PNGs."),
    groups: int | None = typer.Option(None, "--groups", help="Seed groups of the protocol (default: 2 with ≥ 10 "
                                                             "seeds, else 1)."),
    sizes: str | None = typer.Option(None, "--sizes", help="Ensemble sizes, comma list (default: 2,3,4,5 or "
                                                           "what the seeds allow)."),
    headline: str | None = typer.Option(None, "--headline", help="Headline metric (default: the task's first, "
                                                                 "e.g. accuracy for MRPC)."),
    log: bool = typer.Option(True, "--log/--no-log", help="Also log the report as artifacts of the parent run."),
) -> None:
    """Ensembles, t-tests, diversity, mask overlap and figures of a sweep, read back from MLflow."""
    from mte.analysis import ResultSet, build_report
    from tracking.load import load_sweep, log_report, open_sweep

    _, _, parent = open_sweep(experiment, tracking_uri, run_id)
    results = load_sweep(experiment, tracking_uri, parent)
    if not results:
        raise MteError(f"sweep run {parent} of experiment {experiment!r} has no finished trials yet")
    seeds = sorted({r.spec.seed for r in results})
    default_groups, default_sizes = protocol(len(seeds))
    try:
        size_tuple = tuple(int(s) for s in sizes.split(",")) if sizes else default_sizes
    except ValueError:
        raise MteError(f"--sizes must be a comma list of integers, got {sizes!r}") from None
    if not size_tuple or min(size_tuple) < 2 or (groups is not None and groups < 1):
        raise MteError("ensemble sizes must be ≥ 2 and groups ≥ 1")
    summary = build_report(ResultSet.from_seed_results(results), out, groups=groups or default_groups,
                           sizes=size_tuple, headline=headline, expected_seeds=range(max(seeds) + 1))
    if log:
        log_report(experiment, tracking_uri, out, parent)
    console.print(f"report: {summary.markdown}, {summary.html} ({len(results)} runs of sweep {parent})",
                  highlight=False)
