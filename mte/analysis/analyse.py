"""Every number of the report, as tables: no files, no plots (those are `mte.analysis.report`'s).

Table 1 (ensembles): per method and metric, the single-model mean ± std over all seeds, the protocol's
ensemble score (see `ensembles`), diff = ensemble − single, gain = ensemble − BASELINE's ensemble with
its paired-bootstrap interval, and t-test p-values with the paper's marks (see `significance`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mte.analysis import diversity, significance
from mte.analysis.curves import gain_curves
from mte.analysis.ensembles import MethodEnsembles, evaluate
from mte.analysis.options import AnalysisOptions
from mte.analysis.overlap import iou_matrix, mean_off_diagonal
from mte.analysis.resultset import ResultSet, method_order
from mte.errors import MteError
from mte.metrics import predictions
from mte.tasks import TaskSpec

REFERENCE = "baseline"  # every gain, test and interval is against this method's ensembles
SECOND_REFERENCE = "base-lt"  # ‡: better than both


@dataclass
class Analysis:
    task: TaskSpec
    examples: int  # dev examples
    headline: str
    groups: int
    sizes: tuple[int, ...]
    seeds: dict[str, list[int]]  # method → seeds present
    table1: pd.DataFrame  # one row per method; columns <metric>_<quantity>
    table2: pd.DataFrame  # diversity, one row per method (classification only)
    overlap: pd.DataFrame  # mask IoU summary per lottery method
    iou: dict[str, pd.DataFrame]  # method → seed × seed IoU matrix
    curves: pd.DataFrame  # gain vs members, long format
    missing: pd.DataFrame  # (method, seed) expected but absent
    notes: list[str] = field(default_factory=list)
    resamples: int = 1000
    level: float = 0.95

    @property
    def methods(self) -> list[str]:
        return list(self.seeds)


def _headline(task: TaskSpec, headline: str | None) -> str:
    headline = headline or task.metrics[0]
    if headline not in task.metrics:
        raise MteError(f"{task.name} has no metric {headline!r}; choose one of: {', '.join(task.metrics)}")
    return headline


def ensemble_table(rs: ResultSet, ens: dict[str, MethodEnsembles], sizes: Sequence[int], resamples: int,
                   seed: int, alpha: float, level: float) -> pd.DataFrame:
    """Table 1 as numbers (the CSV); `report` formats it."""
    pooled = {m: e.pooled(sizes) for m, e in ens.items()}  # None: the method cannot run the protocol
    score = {m: e.ensemble_score(sizes) for m, e in ens.items()}
    ref, ref2 = pooled.get(REFERENCE), pooled.get(SECOND_REFERENCE)
    if ref is not None:
        w = significance.bootstrap_weights(len(rs.labels), resamples, seed)  # shared: the bootstrap is paired
        ref_boot = {k: significance.protocol_resamples(k, ref[0], rs.labels, w) for k in rs.task.metrics}
    rows = []
    for method, e in ens.items():
        own = pooled[method]
        row: dict[str, object] = {"method": method, "seeds": len(e.seeds),
                                  "combinations": len(own[0].group) if own else 0}
        for k in rs.task.metrics:
            single, ensemble = e.single[k], score[method][k]
            gain = ensemble - score[REFERENCE][k] if ref is not None else np.nan
            gain2 = ensemble - score[SECOND_REFERENCE][k] if ref2 is not None else np.nan
            p1 = p2 = lo = hi = np.nan
            if own is not None and ref is not None and method != REFERENCE:
                p1 = significance.t_test(own[1][k], ref[1][k])
                diff = significance.protocol_resamples(k, own[0], rs.labels, w) - ref_boot[k]
                lo, hi = significance.percentile_interval(diff, level)
            if own is not None and ref2 is not None and method != SECOND_REFERENCE:
                p2 = significance.t_test(own[1][k], ref2[1][k])
            row |= {
                f"{k}_single": float(single.mean()),
                f"{k}_single_std": float(single.std(ddof=1)) if len(single) > 1 else np.nan,
                f"{k}_ensemble": ensemble,
                f"{k}_diff": ensemble - float(single.mean()),
                f"{k}_gain": gain if method != REFERENCE else np.nan,
                f"{k}_gain_ci_low": lo,
                f"{k}_gain_ci_high": hi,
                f"{k}_p_vs_baseline": p1,
                f"{k}_p_vs_base_lt": p2,
                f"{k}_mark": significance.mark((gain, p1), (gain2, p2) if ref2 is not None else None, alpha),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def diversity_table(rs: ResultSet) -> pd.DataFrame:
    """Table 2: mean pairwise diversity over all pairs of a method's members."""
    rows = []
    for method in rs.methods:
        pred = predictions(rs.task, rs.logits(method))
        rows.append({"method": method, "members": len(pred)} | diversity.diversity(pred, rs.labels))
    return pd.DataFrame(rows)


def overlap_tables(rs: ResultSet, notes: list[str]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    rows, matrices = [], {}
    for method in rs.methods:
        members = rs.members[method]
        with_mask = [m for m in members if m.mask is not None]
        if not with_mask:
            continue
        if len(with_mask) < len(members):
            notes.append(f"{method}: {len(members) - len(with_mask)} member(s) without a mask are left out "
                         f"of the mask overlap")
        iou = iou_matrix([m.mask for m in with_mask])
        seeds = [m.seed for m in with_mask]
        matrices[method] = pd.DataFrame(iou, index=pd.Index(seeds, name="seed"), columns=seeds)
        off = iou[np.triu_indices(len(iou), k=1)]
        rows.append({"method": method, "masks": len(seeds), "mean_iou": mean_off_diagonal(iou),
                     "min_iou": float(off.min()) if off.size else np.nan,
                     "max_iou": float(off.max()) if off.size else np.nan})
    return pd.DataFrame(rows, columns=["method", "masks", "mean_iou", "min_iou", "max_iou"]), matrices


def analyse(rs: ResultSet, options: AnalysisOptions | None = None, expected_seeds: Iterable[int] | None = None,
            expected_methods: Iterable[str] | None = None) -> Analysis:
    """All tables of the report. `expected_*`: what a finished sweep holds, to list what is missing."""
    o = options or AnalysisOptions()
    if not rs.methods:
        raise MteError("no results to analyse")
    groups, sizes = o.protocol(max(len(m) for m in rs.members.values()))
    headline = _headline(rs.task, o.headline)
    notes: list[str] = []
    ens = {m: evaluate(rs, m, groups, sizes, extra_sizes=range(1, max(sizes) + 1)) for m in rs.methods}
    notes += [e.problem for e in ens.values() if e.problem]
    if REFERENCE not in ens:
        notes.append("BASELINE has no results: no gains, t-tests, marks or bootstrap intervals")
    elif ens[REFERENCE].problem:
        notes.append("BASELINE cannot run the protocol: no t-tests, marks or bootstrap intervals")
    if SECOND_REFERENCE not in ens:
        notes.append("BASE-LT has no results: ‡ (better than BASELINE and BASE-LT) cannot be given")

    if "spearman" in rs.task.metrics:
        notes.append("Spearman's bootstrap interval re-weights the ranks of the full dev set instead of re-ranking "
                     "each resample (an approximation; its point values are exact)")
    table2 = pd.DataFrame()
    if rs.task.is_regression:
        notes.append(f"{rs.task.name} is a regression task: no diversity table (the measures need right/wrong)")
    else:
        table2 = diversity_table(rs)
        for _, r in table2.iterrows():
            for name in diversity.MEASURES:
                if r[f"{name}_undefined"]:
                    notes.append(f"{r['method']}: {name.replace('_', ' ')} undefined for "
                                 f"{int(r[f'{name}_undefined'])} of {int(r['pairs'])} member pairs "
                                 f"({diversity.UNDEFINED[name]}); left out of its mean")
    overlap, iou = overlap_tables(rs, notes)

    missing: list[tuple[str, int]] = []
    if expected_seeds is not None:
        missing = rs.missing(expected_seeds, method_order([*(expected_methods or []), *rs.methods]))
    return Analysis(
        task=rs.task, examples=len(rs.labels), headline=headline, groups=groups, sizes=sizes,
        seeds={m: rs.seeds(m) for m in rs.methods},
        table1=ensemble_table(rs, ens, sizes, o.resamples, o.resample_seed, o.alpha, o.level),
        table2=table2, overlap=overlap, iou=iou,
        curves=gain_curves(ens, rs.task.metrics, range(1, max(sizes) + 1), REFERENCE),
        missing=pd.DataFrame(missing, columns=["method", "seed"]),
        notes=notes, resamples=o.resamples, level=o.level,
    )
