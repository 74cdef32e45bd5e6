"""Analysis of a sweep's results: ensembles, significance, diversity, mask overlap, the report.

Plain NumPy/SciPy on in-memory arrays (`ResultSet`); where the results were stored is the caller's business.
Entry point: `build_report(ResultSet.from_seed_results(results), out_dir)`.
"""

from mte.analysis.analyse import Analysis, analyse
from mte.analysis.options import AnalysisOptions
from mte.analysis.report import ReportSummary, build_report, write_report
from mte.analysis.resultset import Member, ResultSet

__all__ = ["Analysis", "AnalysisOptions", "Member", "ReportSummary", "ResultSet", "analyse", "build_report",
           "write_report"]
