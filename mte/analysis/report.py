"""The report: `report.md`, a self-contained `report.html` (figures embedded), a CSV per table, PNG figures.

Numbers come from `analyse`; this module only formats them. The document is built once as a list of blocks
and rendered twice (Markdown, HTML), so the two files cannot disagree. Several tasks (one analysis each) make
one report: Table 1 side by side, Fig. 3 as one panel per task, then each task's own sections.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mte.analysis import figures
from mte.analysis.analyse import Analysis, analyse
from mte.analysis.diversity import MEASURES
from mte.analysis.options import AnalysisOptions
from mte.analysis.resultset import ResultSet

DIVERSITY_NAMES = {"q_statistic": "Q statistic ↓", "ratio_errors": "Ratio errors ↑",
                   "negative_double_fault": "Neg. double fault ↑", "disagreement": "Disagreement ↑",
                   "correlation": "Correlation ↓"}


@dataclass
class ReportSummary:
    out_dir: Path
    markdown: Path
    html: Path
    csvs: dict[str, Path]  # table name → CSV
    figures: dict[str, Path]  # figure name → PNG
    analyses: list[Analysis]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # table name → numbers (as in the CSV)

    @property
    def analysis(self) -> Analysis:
        return self.analyses[0]

    @property
    def paths(self) -> list[Path]:
        """Every file written (what to log as artifacts)."""
        return [self.markdown, self.html, *self.csvs.values(), *self.figures.values()]


# ---- formatting ------------------------------------------------------------------------------------

def _num(x: float, scale: float = 100, digits: int = 2, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x * scale:{'+' if sign else ''}.{digits}f}"


def _p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _ranges(values: Iterable[int]) -> str:
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


def _marked(value: float, mark: str, best: bool, sign: bool = False) -> str:
    """A score with the paper's typography: *italic*† better than BASELINE, ***bold italic***‡ better than
    BASELINE and BASE-LT, <u>underlined</u> the best of its column."""
    text = _num(value, sign=sign)
    if text == "—":
        return text
    text = {"†": f"*{text}*", "‡": f"***{text}***"}.get(mark, text)
    return (f"<u>{text}</u>" if best else text) + mark


def table1_display(a: Analysis) -> pd.DataFrame:
    t = a.table1
    show = {"Method": t.method.map(figures.label), "Seeds": t.seeds.astype(str),
            "Sparsity": [_num(s, digits=0) + "%" if np.isfinite(s) else "—" for s in t.sparsity]}
    for k in a.task.metrics:
        show[f"{k} single"] = [f"{_num(m)} ± {_num(s)}" for m, s in zip(t[f"{k}_single"], t[f"{k}_single_std"],
                                                                        strict=True)]
        show[f"{k} ensemble"] = [_marked(e, mk, b) for e, mk, b in
                                 zip(t[f"{k}_ensemble"], t[f"{k}_mark"], t[f"{k}_ensemble_best"], strict=True)]
        show[f"{k} diff"] = [_marked(d, mk, b, sign=True) for d, mk, b in
                             zip(t[f"{k}_diff"], t[f"{k}_diff_mark"], t[f"{k}_diff_best"], strict=True)]
        show[f"{k} Δ BASELINE [{round(100 * a.options.level)}% CI]"] = [
            "—" if not np.isfinite(g) else f"{_num(g, sign=True)} [{_num(lo, sign=True)}, {_num(hi, sign=True)}]"
            for g, lo, hi in zip(t[f"{k}_gain"], t[f"{k}_gain_ci_low"], t[f"{k}_gain_ci_high"], strict=True)]
    show["Winning ticket"] = ["—" if w is None else "yes" if w else "no" for w in t.winning_ticket]
    return pd.DataFrame(show)


def tests_display(a: Analysis) -> pd.DataFrame:
    """Both tests' p-values of every comparison, headline metric."""
    t = a.tests[a.tests.metric == a.headline]
    rows = []
    for (method, ref), g in t.groupby(["method", "reference"], sort=False):
        e, d = (g[g.quantity == q].iloc[0] for q in ("ensemble", "diff"))
        rows.append({"Method": figures.label(method), "vs": figures.label(ref),
                     "Δ ensemble": _num(e.difference, sign=True), "p (seed-level)": _p(e.p_permutation),
                     "p (paper's t-test)": _p(e.p_ttest_paper), "Δ diff": _num(d.difference, sign=True),
                     "p diff (seed-level)": _p(d.p_permutation), "p diff (paper's t-test)": _p(d.p_ttest_paper),
                     "Seed pairs": str(int(e.pairs))})
    return pd.DataFrame(rows)


def table2_display(a: Analysis) -> pd.DataFrame:
    t = a.table2
    show = {"Method": t.method.map(figures.label), "Members": t.members.astype(str)}
    for name in MEASURES:
        show[DIVERSITY_NAMES[name]] = [_num(v, scale=1, digits=3) for v in t[name]]
    return pd.DataFrame(show)


def overlap_display(a: Analysis) -> pd.DataFrame:
    t = a.overlap
    return pd.DataFrame({"Method": t.method.map(figures.label), "Masks": t.masks.astype(str),
                         "Mean IoU": [_num(v, 1, 3) for v in t.mean_iou],
                         "Min": [_num(v, 1, 3) for v in t.min_iou], "Max": [_num(v, 1, 3) for v in t.max_iou]})


def curves_display(a: Analysis) -> pd.DataFrame:
    c = a.curves[a.curves.metric == a.headline]
    if c.empty:
        return pd.DataFrame()
    cells = c.assign(cell=[f"{_num(g, sign=True)} ± {_num(s)}" for g, s in zip(c.gain, c["std"], strict=True)])
    wide = cells.pivot(index="method", columns="members", values="cell").reindex(a.methods).dropna(how="all")
    wide = wide.fillna("—")
    wide.columns = [f"{m} member{'s' if m > 1 else ''}" for m in wide.columns]
    return wide.reset_index().rename(columns={"method": "Method"}).assign(Method=lambda d: d.Method.map(figures.label))


def combined_display(analyses: Sequence[Analysis]) -> pd.DataFrame:
    """Table 1 of several tasks side by side: each task's headline metric (single, ensemble, diff)."""
    methods = list(dict.fromkeys(m for a in analyses for m in a.methods))
    show: dict[str, list[str]] = {"Method": [figures.label(m) for m in methods]}
    for a in analyses:
        t, k = a.table1.set_index("method"), a.headline
        rows = [t.loc[m] if m in t.index else None for m in methods]
        show[f"{a.task.folder} {k} single"] = [
            "—" if r is None else f"{_num(r[f'{k}_single'])} ± {_num(r[f'{k}_single_std'])}" for r in rows]
        show[f"{a.task.folder} {k} ensemble"] = [
            "—" if r is None else _marked(r[f"{k}_ensemble"], r[f"{k}_mark"], r[f"{k}_ensemble_best"]) for r in rows]
        show[f"{a.task.folder} {k} diff"] = [
            "—" if r is None else _marked(r[f"{k}_diff"], r[f"{k}_diff_mark"], r[f"{k}_diff_best"], sign=True)
            for r in rows]
    return pd.DataFrame(show)


# ---- document blocks, rendered as Markdown and HTML ------------------------------------------------

Block = tuple[str, object]  # ("h1" | "h2" | "h3" | "p" | "ul" | "warn" | "table" | "img", payload)


def _md(blocks: Sequence[Block]) -> str:
    out = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {payload}")
        elif kind == "p":
            out.append(str(payload))
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in payload))
        elif kind == "warn":
            out.append("\n".join(["> **⚠ This comparison cannot support a conclusion:**",
                                  *(f"> - {w}" for w in payload)]))
        elif kind == "table":
            df: pd.DataFrame = payload
            rows = [list(map(str, df.columns)), ["---"] * len(df.columns), *df.astype(str).to_numpy().tolist()]
            out.append("\n".join("| " + " | ".join(r) + " |" for r in rows))
        elif kind == "img":
            path, alt = payload
            out.append(f"![{alt}]({path.name})")
    return "\n\n".join(out) + "\n"


_EMPHASIS = [(re.compile(r"&lt;u&gt;(.*?)&lt;/u&gt;"), r"<u>\1</u>"),
             (re.compile(r"\*\*\*(.+?)\*\*\*"), r"<b><i>\1</i></b>"), (re.compile(r"\*(.+?)\*"), r"<i>\1</i>")]


def _inline(text: str) -> str:
    """Escaped HTML of a cell or line, with the table's emphasis (*, ***, <u>) turned into tags."""
    out = html.escape(str(text))
    for pattern, repl in _EMPHASIS:
        out = pattern.sub(repl, out)
    return out


def _html(blocks: Sequence[Block], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
           "body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
           "text-align:right}td:first-child{text-align:left}img{max-width:100%}"
           ".warn{border:2px solid #c60;background:#fff4e5;padding:.5em 1em}</style></head><body>"]
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(str(payload))}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(payload)}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in payload) + "</ul>")
        elif kind == "warn":
            out.append("<div class='warn'><b>⚠ This comparison cannot support a conclusion:</b><ul>"
                       + "".join(f"<li>{html.escape(w)}</li>" for w in payload) + "</ul></div>")
        elif kind == "table":
            df: pd.DataFrame = payload
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
            body = "".join("<tr>" + "".join(f"<td>{_inline(v)}</td>" for v in row) + "</tr>"
                           for row in df.astype(str).to_numpy().tolist())
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            path, alt = payload
            data = base64.b64encode(path.read_bytes()).decode()
            out.append(f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>")
    return "\n".join([*out, "</body></html>\n"])


def _header(a: Analysis) -> list[Block]:
    task = a.task
    kind = "scores" if task.is_regression else f"class {a.options.combine}"
    seeds = "; ".join(f"{figures.label(m)} {len(s)} ({_ranges(s)})" for m, s in a.seeds.items())
    sizes = "/".join(map(str, a.sizes))
    protocol = (f"Protocol: seeds are grouped by id (0–9, 10–19, …); within a group every {sizes}-member "
                f"combination is an ensemble (the mean of its members' {kind}); Table 1's ensemble score is the mean "
                f"over a group's combinations, then over groups"
                + (" (the paper's Table 1)" if a.paper_sizes else f" ({sizes} members: NOT the paper's 5)")
                + f". Fig. 3 uses sizes {a.curve_sizes[0]}–{a.curve_sizes[-1]}. Single = mean ± sample standard "
                  f"deviation over all seeds.")
    blocks: list[Block] = [
        ("p", f"Task {task.name}: {a.examples} dev examples; metrics {', '.join(task.metrics)} (headline: "
              f"{a.headline}). Seeds per method: {seeds}."),
        ("p", protocol),
    ]
    if a.context:
        blocks.append(("ul", [f"{k}: {v}" for k, v in a.context.items()]))
    if a.warnings:
        blocks.append(("warn", a.warnings))
    return blocks


def _no_significant(a: Analysis) -> str | None:
    """One explicit line when no method is significantly better than any reference (seed-level test)."""
    t = a.tests[(a.tests.metric == a.headline)]
    hit = t[(t.difference > 0) & (t.p_permutation < a.options.alpha)]
    if len(t) and hit.empty:
        return (f"No difference is significant: no method's ensemble or diff is better than BASELINE's, BASE-LT's "
                f"or BAGGING's at p < {a.options.alpha:g} (seed-level permutation test, {a.headline}).")
    return None


def _task_blocks(a: Analysis, figs: dict[str, Path], level: str, prefix: str) -> list[Block]:
    blocks: list[Block] = []
    if len(a.missing):
        by_method = a.missing.groupby("method", sort=False).seed.apply(list)
        blocks += [(level, "Missing results"),
                   ("p", "Expected but not (yet) there, so left out of every table:"),
                   ("ul", [f"{figures.label(m)}: seed(s) {_ranges(s)}" for m, s in by_method.items()])]
    if a.notes:
        blocks += [(level, "Notes"), ("ul", a.notes)]
    alpha = a.options.alpha
    blocks += [
        (level, "Table 1: single models and ensembles"),
        ("p", f"Scores ×100. Marks (seed-level permutation test, p < {alpha:g}): *italic*† better than BASELINE, "
              f"***bold italic***‡ better than BASELINE and BASE-LT; <u>underlined</u>: the best of the column. "
              f"Diff = ensemble − single, marked when it is larger than BASELINE's diff. Δ BASELINE = ensemble − "
              f"BASELINE's ensemble, with a {round(100 * a.options.level)}% seed-level interval (delete-one-seed "
              f"jackknife). Winning ticket: the single score is no worse than BASELINE's by more than one standard "
              f"deviation (Chen et al.). Every p-value is in {prefix}table1_ensembles.csv and {prefix}tests.csv."),
        ("table", table1_display(a)),
    ]
    line = _no_significant(a)
    if line:
        blocks.append(("p", line))
    if not a.tests.empty:
        blocks += [
            (level, "Table 1b: significance of the differences"),
            ("p", f"{a.headline}, every method against BASELINE, BASE-LT and BAGGING. Seed-level: the permutation "
                  f"test that swaps the two methods' members seed by seed and recomputes Table 1's statistic (its "
                  f"size is checked by simulation; the marks use it). Paper's t-test: Student's t-test over the "
                  f"combination scores, as in the paper; combinations overlap, so this test is anti-conservative "
                  f"(it finds differences that are not there)."),
            ("table", tests_display(a)),
        ]
    if not a.table2.empty:
        blocks += [
            (level, "Table 2: diversity of members"),
            ("p", "Mean over all pairs of a method's members (deslib's definitions); ↑/↓: higher/lower means "
                  "more diverse. Pairs where a measure is undefined (e.g. ratio errors without common errors) "
                  "are left out of its mean; their counts are in table2_diversity.csv and the notes."),
            ("table", table2_display(a)),
        ]
    if "gain_vs_members" in figs:
        blocks += [
            (level, "Figure 3: gain over BASELINE versus ensemble members"),
            ("p", f"{a.headline} of the m-member ensembles minus BASELINE's m-member ensembles (×100); the line is "
                  f"the mean over combinations, the band ±1 standard deviation of the method's combination scores "
                  f"(how much one m-member ensemble varies), not a confidence interval. Data for every metric in "
                  f"{prefix}curves.csv."),
            ("img", (figs["gain_vs_members"], "Figure 3: gain versus members")),
            ("table", curves_display(a)),
        ]
    if not a.overlap.empty:
        blocks += [(level, "Figure 4: mask overlap between seeds"),
                   ("p", "Intersection over union of the kept weights of two seeds' masks; mean over distinct "
                         "pairs (matrices in mask_iou_<method>.csv). The diagonal (a mask with itself, always 1) is "
                         "left blank so the colour scale shows the differences between pairs."),
                   ("table", overlap_display(a))]
        if "mask_iou" in figs:
            blocks.append(("img", (figs["mask_iou"], "Figure 4: mask IoU heatmaps")))
    return blocks


def _tables(a: Analysis) -> dict[str, pd.DataFrame]:
    tables = {"table1_ensembles": a.table1, "tests": a.tests, "table2_diversity": a.table2,
              "mask_overlap": a.overlap, "curves": a.curves, "missing": a.missing}
    return tables | {f"mask_iou_{m}": df.reset_index() for m, df in a.iou.items()}


def write_report(analyses: Analysis | Sequence[Analysis], out_dir: Path, plots: bool = True) -> ReportSummary:
    """Write every file of the report (one task, or several side by side) into out_dir (created if needed)."""
    analyses = [analyses] if isinstance(analyses, Analysis) else list(analyses)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    several = len(analyses) > 1
    tables, csvs, figs_by_task = {}, {}, []
    for a in analyses:
        prefix = f"{a.task.name}_" if several else ""
        for name, df in _tables(a).items():
            if name == "table2_diversity" and df.empty:
                continue
            tables[prefix + name] = df
            csvs[prefix + name] = out_dir / f"{prefix}{name}.csv"
            df.to_csv(csvs[prefix + name], index=False)
        figs: dict[str, Path] = {}
        if plots:
            if a.curves.gain.notna().any():
                figs["gain_vs_members"] = figures.save(
                    figures.gain_figure([(a.curves, a.headline, f"{a.task.folder}: gain over BASELINE")]),
                    out_dir / f"{prefix}fig3_gain_vs_members.png")
            if a.iou:
                figs["mask_iou"] = figures.save(figures.iou_figure(a.iou), out_dir / f"{prefix}fig4_mask_iou.png")
        figs_by_task.append(figs)
    all_figs = {f"{a.task.name}_{k}" if several else k: p for a, f in zip(analyses, figs_by_task, strict=True)
                for k, p in f.items()}
    names = " and ".join(a.task.folder for a in analyses)
    blocks: list[Block] = [("h1", f"Multi-ticket ensembles on {names}")]
    if several:
        if plots and any(a.curves.gain.notna().any() for a in analyses):
            all_figs["gain_vs_members"] = figures.save(figures.gain_figure(
                [(a.curves, a.headline, a.task.folder) for a in analyses]), out_dir / "fig3_gain_vs_members.png")
        blocks += [("h2", "Table 1: all tasks"),
                   ("p", "Each task's headline metric ×100; marks as in each task's Table 1 below."),
                   ("table", combined_display(analyses))]
        if "gain_vs_members" in all_figs:
            blocks += [("h2", "Figure 3: gain over BASELINE versus ensemble members, per task"),
                       ("img", (all_figs["gain_vs_members"], "Figure 3: one panel per task"))]
    for a, figs in zip(analyses, figs_by_task, strict=True):
        if several:
            blocks.append(("h2", a.task.folder))
        blocks += _header(a)
        blocks += _task_blocks(a, figs, "h3" if several else "h2", f"{a.task.name}_" if several else "")
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(_md(blocks))
    page.write_text(_html(blocks, f"mte report: {names}"))
    return ReportSummary(out_dir, md, page, csvs, all_figs, analyses, tables)


def build_report(rs: ResultSet, out_dir: Path, options: AnalysisOptions | None = None,
                 expected_seeds: Iterable[int] | None = None, expected_methods: Iterable[str] | None = None,
                 plots: bool = True) -> ReportSummary:
    """Analyse `rs` and write the report. `expected_seeds`/`expected_methods`: what the finished sweep
    will hold, so a partial one lists what is missing."""
    return write_report(analyse(rs, options, expected_seeds, expected_methods), out_dir, plots)
