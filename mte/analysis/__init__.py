"""Analysis of a sweep's results: ensembles, significance, diversity, mask overlap, the report.

Plain NumPy/SciPy on in-memory arrays (`ResultSet`); where the results were stored is the caller's business.
Entry point: `build_report(ResultSet.from_seed_results(results), out_dir)`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mte.analysis.analyse import Analysis, analyse
    from mte.analysis.options import AnalysisOptions
    from mte.analysis.report import ReportSummary, build_report, write_report
    from mte.analysis.resultset import Member, ResultSet

# Imported on first use: SciPy, pandas and matplotlib take ~2 s to import, and `mte run` needs none of them.
_HOMES = {"Analysis": "analyse", "analyse": "analyse", "AnalysisOptions": "options", "ReportSummary": "report",
          "build_report": "report", "write_report": "report", "Member": "resultset", "ResultSet": "resultset"}
__all__ = ["Analysis", "AnalysisOptions", "Member", "ReportSummary", "ResultSet", "analyse", "build_report",
           "write_report"]


class _Package(types.ModuleType):
    """This package, but a submodule named like one of its exports (`analyse`) does not replace the export."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOMES and isinstance(value, types.ModuleType):
            return  # the import system binding the submodule: `mte.analysis.analyse` stays the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'mte.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mte.analysis.{_HOMES[name]}"), name)
