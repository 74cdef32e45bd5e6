"""The report stage of a sweep: its finished runs read back from MLflow (not the local store, so the report shows
exactly what was recorded), analysed by `mte.analysis`, written to a folder and attached to the parent run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.console import Console

from mte.analysis.options import AnalysisOptions
from mte.errors import MteError
from mte.fields import hp

console = Console(stderr=True)


@dataclass(frozen=True)
class ReportOptions:
    PANEL: ClassVar[str] = "Report"
    run_id: str | None = hp(None, "The sweep's parent run (default: the experiment's latest sweep).")
    out: Path = hp(Path("mte-report/report"), "Folder for report.md/html, CSVs and PNGs.")
    log: bool = hp(True, "Also log the report as artifacts of the parent run.")


def run_report(experiment: str, tracking_uri: str | None, report: ReportOptions,
               analysis: AnalysisOptions = AnalysisOptions(), methods: tuple[str, ...] | None = None,
               seeds: int | None = None) -> Path:
    """Read the sweep back, write its report to `report.out` (and log it); `methods`/`seeds`: what the finished
    sweep will hold, so a partial one lists what is missing (default: what was recorded)."""
    from mte.analysis import ResultSet, build_report
    from tracking.load import load_sweep, log_report, open_sweep

    _, _, parent = open_sweep(experiment, tracking_uri, report.run_id)
    results = load_sweep(experiment, tracking_uri, parent)
    if not results:
        raise MteError(f"sweep run {parent} of experiment {experiment!r} has no finished trials yet")
    recorded = sorted({r.spec.seed for r in results})
    expected = range(seeds) if seeds is not None else range(max(recorded) + 1)
    summary = build_report(ResultSet.from_seed_results(results), report.out, analysis, expected_seeds=expected,
                           expected_methods=methods)
    if report.log:
        log_report(experiment, tracking_uri, report.out, parent)
    console.print(f"report: {summary.markdown}, {summary.html} ({len(results)} runs of sweep {parent}"
                  f"{'; also in the parent run artifacts, report/' if report.log else ''})", highlight=False)
    return report.out
