"""The report's tables as text: numbers ×100 with the paper's typography, p-values, seed ranges."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from mte.analysis import figures
from mte.analysis.analyse import Analysis
from mte.analysis.diversity import MEASURES

DIVERSITY_NAMES = {"q_statistic": "Q statistic ↓", "ratio_errors": "Ratio errors ↑",
                   "negative_double_fault": "Neg. double fault ↑", "disagreement": "Disagreement ↑",
                   "correlation": "Correlation ↓"}


def num(x: float, scale: float = 100, digits: int = 2, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x * scale:{'+' if sign else ''}.{digits}f}"


def p_value(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def ranges(values: Iterable[int]) -> str:
    """[0, 1, 2, 5] → '0–2, 5'."""
    out: list[str] = []
    values = sorted(values)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}–{values[j]}")
        i = j + 1
    return ", ".join(out)


def marked(value: float, mark: str, best: bool, sign: bool = False) -> str:
    """A score with the paper's typography: *italic*† better than BASELINE, ***bold italic***‡ better than
    BASELINE and BASE-LT, <u>underlined</u> the best of its column."""
    text = num(value, sign=sign)
    if text == "—":
        return text
    text = {"†": f"*{text}*", "‡": f"***{text}***"}.get(mark, text)
    return (f"<u>{text}</u>" if best else text) + mark


def sparsity(prunable: float, of_all: float) -> str:
    """'30% (21% of all)': the share of prunable weights removed, and of all parameters where it is known."""
    if not np.isfinite(prunable):
        return "—"
    return num(prunable, digits=0) + "%" + (f" ({num(of_all, digits=0)}% of all)" if np.isfinite(of_all) else "")


def table1_display(a: Analysis) -> pd.DataFrame:
    t = a.table1
    show = {"Method": t.method.map(figures.label), "Seeds": t.seeds.astype(str),
            "Sparsity (of prunable weights)": [sparsity(s, a) for s, a in zip(t.sparsity, t.sparsity_of_all,
                                                                              strict=True)]}
    for k in a.task.metrics:
        show[f"{k} single"] = [f"{num(m)} ± {num(s)}" for m, s in zip(t[f"{k}_single"], t[f"{k}_single_std"],
                                                                        strict=True)]
        show[f"{k} ensemble"] = [marked(e, mk, b) for e, mk, b in
                                 zip(t[f"{k}_ensemble"], t[f"{k}_mark"], t[f"{k}_ensemble_best"], strict=True)]
        show[f"{k} diff"] = [marked(d, mk, b, sign=True) for d, mk, b in
                             zip(t[f"{k}_diff"], t[f"{k}_diff_mark"], t[f"{k}_diff_best"], strict=True)]
        show[f"{k} Δ BASELINE [{round(100 * a.options.level)}% CI]"] = [
            "—" if not np.isfinite(g) else f"{num(g, sign=True)} [{num(lo, sign=True)}, {num(hi, sign=True)}]"
            for g, lo, hi in zip(t[f"{k}_gain"], t[f"{k}_gain_ci_low"], t[f"{k}_gain_ci_high"], strict=True)]
    show["Winning tickets"] = ["—" if not np.isfinite(share) else f"{int(w)}/{n} ({100 * share:.0f}%)"
                               for w, n, share in zip(t.winning_tickets, t.seeds, t.winning_share, strict=True)]
    return pd.DataFrame(show)


def tests_display(a: Analysis) -> pd.DataFrame:
    """Every comparison's tests, headline metric: the one-sided p the marks use, Holm's, the paper's t-test."""
    t = a.tests[a.tests.metric == a.headline]
    rows = []
    for (method, ref), g in t.groupby(["method", "reference"], sort=False):
        e, d = (g[g.quantity == q].iloc[0] for q in ("ensemble", "diff"))
        rows.append({"Method": figures.label(method), "vs": figures.label(ref),
                     "Δ ensemble": num(e.difference, sign=True), "p (seed-level)": p_value(e.p_permutation),
                     "p Holm": p_value(e.p_holm), "p (paper's t-test)": p_value(e.p_ttest_paper),
                     "Δ diff": num(d.difference, sign=True), "p diff (seed-level)": p_value(d.p_permutation),
                     "p diff Holm": p_value(d.p_holm), "p diff (paper's t-test)": p_value(d.p_ttest_paper),
                     "Seed pairs": str(int(e.pairs))})
    return pd.DataFrame(rows)


def table2_display(a: Analysis) -> pd.DataFrame:
    t = a.table2
    show = {"Method": t.method.map(figures.label), "Members": t.members.astype(str)}
    for name in MEASURES:
        show[DIVERSITY_NAMES[name]] = [num(v, scale=1, digits=3) for v in t[name]]
    return pd.DataFrame(show)


def overlap_display(a: Analysis) -> pd.DataFrame:
    t = a.overlap
    return pd.DataFrame({"Method": t.method.map(figures.label), "Masks": t.masks.astype(str),
                         "Mean IoU": [num(v, 1, 3) for v in t.mean_iou],
                         "Min": [num(v, 1, 3) for v in t.min_iou], "Max": [num(v, 1, 3) for v in t.max_iou]})


def curves_display(a: Analysis) -> pd.DataFrame:
    c = a.curves[a.curves.metric == a.headline]
    if c.empty:
        return pd.DataFrame()
    cells = c.assign(cell=[f"{num(g, sign=True)} ± {num(s)}" for g, s in zip(c.gain, c["std"], strict=True)])
    wide = cells.pivot(index="method", columns="members", values="cell").reindex(a.methods).dropna(how="all")
    wide = wide.fillna("—")
    wide.columns = [f"{m} member{'s' if m > 1 else ''}" for m in wide.columns]
    return wide.reset_index().rename(columns={"method": "Method"}).assign(Method=lambda d: d.Method.map(figures.label))


def combined_display(analyses: Sequence[Analysis]) -> pd.DataFrame:
    """Table 1 of several tasks side by side: every metric of each task (single, ensemble, diff)."""
    methods = list(dict.fromkeys(m for a in analyses for m in a.methods))
    show: dict[str, list[str]] = {"Method": [figures.label(m) for m in methods]}
    for a in analyses:
        t = a.table1.set_index("method")
        rows = [t.loc[m] if m in t.index else None for m in methods]
        for k in a.task.metrics:
            show[f"{a.task.folder} {k} single"] = [
                "—" if r is None else f"{num(r[f'{k}_single'])} ± {num(r[f'{k}_single_std'])}" for r in rows]
            show[f"{a.task.folder} {k} ensemble"] = [
                "—" if r is None else marked(r[f"{k}_ensemble"], r[f"{k}_mark"], r[f"{k}_ensemble_best"])
                for r in rows]
            show[f"{a.task.folder} {k} diff"] = [
                "—" if r is None else marked(r[f"{k}_diff"], r[f"{k}_diff_mark"], r[f"{k}_diff_best"], sign=True)
                for r in rows]
    return pd.DataFrame(show)


def calibration_display(a: Analysis) -> pd.DataFrame:
    """NLL and Brier as they are (3 decimals), ECE ×100; single: mean ± sd over seeds."""
    t = a.calibration
    show = {"Method": t.method.map(figures.label)}
    for name, label, scale, digits in (("nll", "NLL ↓", 1, 3), ("ece", "ECE ×100 ↓", 100, 2),
                                       ("brier", "Brier ↓", 1, 3)):
        show[f"{label} single"] = [f"{num(m, scale, digits)} ± {num(s, scale, digits)}"
                                   for m, s in zip(t[f"{name}_single"], t[f"{name}_single_std"], strict=True)]
        show[f"{label} ensemble"] = [num(v, scale, digits) for v in t[f"{name}_ensemble"]]
    return pd.DataFrame(show)
