"""`mte report`: ensembles, significance, diversity, mask overlap and figures of a sweep, read back from MLflow
(or, with --store, straight from a result store)."""

from __future__ import annotations

from mte.analysis.options import AnalysisOptions
from mte.cli.options import options
from sweeps.report import ReportOptions
from tracking.options import TrackingOptions


@options(tracking=TrackingOptions, analysis=AnalysisOptions, report=ReportOptions, exclude=("artifact_location",),
         plugins=True)
def report(tracking: TrackingOptions, analysis: AnalysisOptions, report: ReportOptions) -> None:
    """Ensembles, t-tests, diversity, mask overlap and figures of a sweep, read back from MLflow (or --store)."""
    from sweeps.report import run_report

    run_report(tracking, report, analysis)
