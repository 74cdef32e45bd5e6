"""Every number of the report, as tables: no files, no plots (those are `mte.analysis.report`'s).

Table 1 (ensembles), per method and metric: the single-model mean ± std (sample, ddof = 1) over all seeds; the
ensemble score of the paper's protocol (every 5-member combination within a seed group, averaged over the
combinations and the groups; see `ensembles`); diff = ensemble − single; Δ = ensemble − BASELINE's with a
seed-level interval; p-values of both tests (the paper's t-test and the seed-level permutation test, see
`significance`) against BASELINE, BASE-LT and BAGGING, for the ensemble and for the diff, with Holm-adjusted
p-values. Marks (`marks`): † better than BASELINE, ‡ better than BASELINE and BASE-LT; the best value of a column
is marked too. Sparsity, and for the *-LT methods the share of winning tickets (`learning`); for classification,
NLL, ECE and Brier of single models and ensembles (`calibration`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mte.analysis import calibration, diversity, learning, marks
from mte.analysis.curves import gain_curves
from mte.analysis.ensembles import PAPER_SIZE, MethodEnsembles, evaluate, seed_groups
from mte.analysis.marks import BASE_LT, BASELINE
from mte.analysis.options import AnalysisOptions
from mte.analysis.overlap import iou_matrix, mean_off_diagonal
from mte.analysis.resultset import ResultSet, method_order
from mte.analysis.significance import Comparison, compare
from mte.errors import MteError
from mte.methods import GROUP_SIZE
from mte.metrics import predictions
from mte.tasks import TaskSpec

BAGGING = "bagging"
REFERENCES = (BASELINE, BASE_LT, BAGGING)  # every method is tested against each of these that is present
PAPER_GROUPS = 2


def ref_name(ref: str) -> str:
    return ref.replace("-", "_")


@dataclass
class Analysis:
    task: TaskSpec
    examples: int  # dev examples
    headline: str
    sizes: tuple[int, ...]  # Table 1's ensemble sizes
    curve_sizes: tuple[int, ...]  # Fig. 3's
    seeds: dict[str, list[int]]  # method → seeds present
    groups: dict[str, list[int]]  # method → seeds in each of its groups
    table1: pd.DataFrame  # one row per method; columns <metric>_<quantity>
    tests: pd.DataFrame  # one row per (method, reference, metric, quantity): both tests, Δ and its interval
    table2: pd.DataFrame  # diversity, one row per method (classification only)
    overlap: pd.DataFrame  # mask IoU summary per lottery method
    iou: dict[str, pd.DataFrame]  # method → seed × seed IoU matrix
    curves: pd.DataFrame  # gain vs members, long format
    missing: pd.DataFrame  # (method, seed) expected but absent
    options: AnalysisOptions
    majority: float | None  # majority-class rate of the dev labels (classification)
    family: int = 0  # one-sided tests in the Holm family (every row of `tests` with a p-value)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)  # NLL, ECE, Brier per method (classification)
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)  # the reliability diagram's bins
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # why the comparison cannot support a conclusion
    context: dict[str, str] = field(default_factory=dict)  # the settings that produced the results (header)

    @property
    def methods(self) -> list[str]:
        return list(self.seeds)

    @property
    def paper_sizes(self) -> bool:
        return self.sizes == (PAPER_SIZE,)


def _headline(task: TaskSpec, headline: str | None) -> str:
    headline = headline or task.metrics[0]
    if headline not in task.metrics:
        raise MteError(f"{task.name} has no metric {headline!r}; choose one of: {', '.join(task.metrics)}")
    return headline


def table_sizes(groups: Mapping[str, list[int]], options: AnalysisOptions) -> tuple[tuple[int, ...], str | None]:
    """Table 1's ensemble sizes (from each method's group sizes), and a note when they are not the paper's 5."""
    if options.sizes is not None:
        sizes = tuple(sorted(set(options.sizes)))
        if sizes == (PAPER_SIZE,):
            return sizes, None
        return sizes, (f"Table 1 pools ensembles of {', '.join(map(str, sizes))} members as asked (--sizes): not "
                       f"the paper's protocol, which uses {PAPER_SIZE}-member ensembles")
    # The largest size every method can form (methods are compared at one size); a method with a single seed
    # per group forms no ensemble at all and does not pull the others down.
    largest = [max(sizes) for sizes in groups.values()]
    fit = min([n for n in largest if n >= 2] or [1])
    if fit >= PAPER_SIZE:
        return (PAPER_SIZE,), None
    return (fit,), (f"Table 1 uses {fit}-member ensembles, the largest every method's groups allow (the paper: "
                    f"{PAPER_SIZE}-member ensembles within 2 groups of {GROUP_SIZE} seeds)")


def ensemble_table(rs: ResultSet, ens: dict[str, MethodEnsembles], sizes: tuple[int, ...],
                   comparisons: dict[tuple[str, str], Comparison], alpha: float, headline: str) -> pd.DataFrame:
    """Table 1 as numbers (the CSV); `report` formats it."""
    score = {m: e.table_score(sizes) for m, e in ens.items()}
    rows = []
    for method, e in ens.items():
        t = e.table(sizes)
        sparsity = [m.sparsity for m in rs.members[method] if m.sparsity is not None]
        of_all = [m.sparsity_all for m in rs.members[method] if m.sparsity_all is not None]
        row: dict[str, object] = {"method": method, "seeds": len(e.seeds), "groups": len(e.groups),
                                  "combinations": len(t[0]) if t else 0,
                                  "sparsity": float(np.mean(sparsity)) if sparsity else np.nan,
                                  "sparsity_of_all": float(np.mean(of_all)) if of_all else np.nan}
        for k in rs.task.metrics:
            single, ensemble = e.single[k], score[method][k]
            row |= {f"{k}_single": float(single.mean()),
                    f"{k}_single_std": float(single.std(ddof=1)) if len(single) > 1 else np.nan,
                    f"{k}_ensemble": ensemble, f"{k}_diff": ensemble - float(single.mean())}
            for ref in REFERENCES:
                c = comparisons.get((method, ref))
                r = ref_name(ref)
                row |= {
                    f"{k}_gain_vs_{r}": c.gain[k] if c else np.nan,
                    f"{k}_diff_gain_vs_{r}": c.diff_gain[k] if c else np.nan,
                    f"{k}_p_vs_{r}": c.p_perm[k] if c else np.nan,
                    f"{k}_p_diff_vs_{r}": c.p_perm_diff[k] if c else np.nan,
                    f"{k}_p_holm_vs_{r}": c.p_holm.get(k, np.nan) if c else np.nan,
                    f"{k}_p_holm_diff_vs_{r}": c.p_holm_diff.get(k, np.nan) if c else np.nan,
                    f"{k}_ttest_p_vs_{r}": c.p_ttest[k] if c else np.nan,
                    f"{k}_ttest_p_diff_vs_{r}": c.p_ttest_diff[k] if c else np.nan,
                    f"{k}_gain_vs_{r}_ci_low": c.ci_low[k] if c else np.nan,
                    f"{k}_gain_vs_{r}_ci_high": c.ci_high[k] if c else np.nan,
                }
            row[f"{k}_gain"] = row[f"{k}_gain_vs_baseline"]  # Δ BASELINE, the report's column
            row[f"{k}_gain_ci_low"] = row[f"{k}_gain_vs_baseline_ci_low"]
            row[f"{k}_gain_ci_high"] = row[f"{k}_gain_vs_baseline_ci_high"]
            row[f"{k}_mark"] = marks.mark(comparisons, method, k, alpha, diff=False)
            row[f"{k}_diff_mark"] = marks.mark(comparisons, method, k, alpha, diff=True)
        rows.append(row)
    table = pd.DataFrame(rows)
    for k in rs.task.metrics:
        for col in (f"{k}_ensemble", f"{k}_diff"):
            best = table[col].max()
            table[f"{col}_best"] = np.isfinite(table[col]) & (table[col] == best)
    tickets = {m: learning.winning_tickets(e.single[headline], ens[BASELINE].single[headline],
                                           learning.learned(e.single, rs.labels, (headline,)))
               for m, e in ens.items() if rs.prunes(m) and BASELINE in ens}
    table["winning_tickets"] = [tickets[m].winning if tickets.get(m) else np.nan for m in table.method]
    table["winning_share"] = [tickets[m].share if tickets.get(m) else np.nan for m in table.method]
    table["winning_threshold"] = [tickets[m].threshold if tickets.get(m) else np.nan for m in table.method]
    return table


def tests_table(comparisons: dict[tuple[str, str], Comparison], metrics: tuple[str, ...]) -> pd.DataFrame:
    """One row per test: the one-sided p the marks use, its Holm adjustment, the two-sided p, the paper's t-test."""
    rows = []
    for (method, ref), c in comparisons.items():
        for k in metrics:
            for quantity, gain, p_perm, p_holm, p_two, p_t in (
                    ("ensemble", c.gain, c.p_perm, c.p_holm, c.p_perm_two_sided, c.p_ttest),
                    ("diff", c.diff_gain, c.p_perm_diff, c.p_holm_diff, c.p_perm_diff_two_sided, c.p_ttest_diff)):
                rows.append({"method": method, "reference": ref, "metric": k, "quantity": quantity,
                             "difference": gain[k], "p_permutation": p_perm[k], "p_holm": p_holm.get(k, np.nan),
                             "p_permutation_two_sided": p_two[k], "p_ttest_paper": p_t[k],
                             "ci_low": c.ci_low[k] if quantity == "ensemble" else np.nan,
                             "ci_high": c.ci_high[k] if quantity == "ensemble" else np.nan,
                             "pairs": len(c.seeds), "permutations": c.permutations, "exact": c.exact})
    columns = ["method", "reference", "metric", "quantity", "difference", "p_permutation", "p_holm",
               "p_permutation_two_sided", "p_ttest_paper", "ci_low", "ci_high", "pairs", "permutations", "exact"]
    return pd.DataFrame(rows, columns=columns)


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


def conclusion_warnings(rs: ResultSet, ens: dict[str, MethodEnsembles], comparisons: dict[tuple[str, str], Comparison],
                        alpha: float, headline: str) -> tuple[list[str], float | None]:
    """Why the tables cannot support a conclusion (empty if nothing is wrong), and the majority-class rate."""
    out = []
    full = {m: sum(n >= PAPER_SIZE for n in e.group_sizes) for m, e in ens.items()}
    short = [m for m, n in full.items() if n < PAPER_GROUPS]
    if short:
        out.append(f"fewer than {PAPER_GROUPS} groups of {PAPER_SIZE} seeds for {', '.join(short)} (the paper: "
                   f"{PAPER_GROUPS} groups of {GROUP_SIZE}): its ensembles rest on too few seeds to compare methods")
    majority = None if rs.task.is_regression else float(np.bincount(rs.labels).max() / len(rs.labels))
    checked = tuple(dict.fromkeys([headline, *(["accuracy"] if "accuracy" in rs.task.metrics else [])]))
    out += learning.not_learned_warnings({m: e.single for m, e in ens.items()}, rs.labels, checked)
    out += marks.out_of_reach(comparisons, alpha)
    return out, majority


def analyse(rs: ResultSet, options: AnalysisOptions | None = None, expected_seeds: Iterable[int] | None = None,
            expected_methods: Iterable[str] | None = None, context: Mapping[str, str] | None = None,
            warnings: Iterable[str] = ()) -> Analysis:
    """All tables of the report. `expected_*`: what a finished sweep holds, to list what is missing; `context`:
    the settings that produced the results (printed in the header); `warnings`: the caller's own."""
    o = (options or AnalysisOptions()).validate()
    if not rs.methods:
        raise MteError("no results to analyse")
    headline = _headline(rs.task, o.headline)
    most = max(len(g) for m in rs.methods for g in seed_groups(rs.seeds(m)))
    if most < 2:
        raise MteError("every method has a single seed (per group): an ensemble needs at least 2; record more seeds "
                       "(e.g. mte sweep --resume --seeds 20)")
    notes: list[str] = []
    sizes, deviation = table_sizes({m: [len(g) for g in seed_groups(rs.seeds(m))] for m in rs.methods}, o)
    if deviation:
        notes.append(deviation)
    curve_sizes = tuple(range(1, max(PAPER_SIZE, *sizes) + 1))
    ens = {m: evaluate(rs, m, tuple(sorted(set(sizes) | set(curve_sizes))), o.combine) for m in rs.methods}
    for m, e in ens.items():
        if e.table(sizes) is None:
            notes.append(f"{m} has {len(e.seeds)} seed(s) in groups of {', '.join(map(str, e.group_sizes))}: too few "
                         f"for {'/'.join(map(str, sizes))}-member ensembles, so its ensemble columns are empty")
        elif len(e.groups) > 1 and len(set(e.group_sizes)) > 1:
            notes.append(f"{m}: groups of {', '.join(map(str, e.group_sizes))} seeds (a missing seed leaves a smaller "
                         f"group; groups still weigh the same)")
    comparisons = {}
    for method in ens:
        for ref in REFERENCES:
            if ref in ens and ref != method:
                c = compare(rs.task, rs.labels, ens[method], ens[ref], sizes, o.permutations, o.permutation_seed,
                            o.level)
                if c is not None:
                    comparisons[(method, ref)] = c
    partial = sorted({f"{m.upper()} vs {r.upper()} ({len(c.seeds)})" for (m, r), c in comparisons.items()
                      if len(c.seeds) < max(len(ens[m].seeds), len(ens[r].seeds))})
    if partial:
        notes.append("Δ and the tests pair the seeds both methods have, so where seed sets differ Δ is not the "
                     f"difference of the ensemble columns: {', '.join(partial)} seed pairs")
    for ref in (BASELINE, BASE_LT):
        if ref not in ens:
            notes.append(f"{ref.upper()} has no results: no {'gains, tests or marks' if ref == BASELINE else '‡'} "
                         f"against it")
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
    family = marks.adjust(comparisons, rs.task.metrics)
    table1 = ensemble_table(rs, ens, sizes, comparisons, o.alpha, headline)
    calib, reliability = pd.DataFrame(), pd.DataFrame()
    if not rs.task.is_regression:  # in Table 1 too, so the sweep's parent run records them as metrics
        calib, reliability = calibration.calibration_tables({m: rs.logits(m) for m in ens}, ens, sizes, rs.labels,
                                                            o.combine)
        table1 = table1.merge(calib, on="method", how="left")
    found, majority = conclusion_warnings(rs, ens, comparisons, o.alpha, headline)
    return Analysis(
        task=rs.task, examples=len(rs.labels), headline=headline, sizes=sizes, curve_sizes=curve_sizes,
        seeds={m: rs.seeds(m) for m in rs.methods},
        groups={m: [len(g) for g in e.groups] for m, e in ens.items()},
        table1=table1, tests=tests_table(comparisons, rs.task.metrics), table2=table2, overlap=overlap, iou=iou,
        curves=gain_curves(ens, rs.task.metrics, curve_sizes, BASELINE),
        missing=pd.DataFrame(missing, columns=["method", "seed"]), options=o, majority=majority, family=family,
        calibration=calib, reliability=reliability,
        notes=notes, warnings=[*warnings, *found], context=dict(context or {}),
    )
