"""The hook from a finished sweep to the report stage (`mte.analysis`), whose output joins the parent run.

The results are read back from MLflow (not the local store), so the report shows exactly what was recorded.
The paper's protocol (2 groups of up to 5-member ensembles) needs 10 seeds; smaller sweeps (the quick
preset's 3) get one group and ensembles up to the number of seeds.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

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
