"""The report: `report.md`, a self-contained `report.html` (figures embedded), a CSV per table, PNG figures.

Numbers come from `analyse`; this module only formats them. The document is built once as a list of
blocks and rendered twice (Markdown, HTML), so the two files cannot disagree.
"""

from __future__ import annotations

import base64
import html
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
    analysis: Analysis
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # table name → numbers (as in the CSV)

    @property
    def paths(self) -> list[Path]:
        """Every file written (what to log as artifacts)."""
        return [self.markdown, self.html, *self.csvs.values(), *self.figures.values()]


# ---- formatting ------------------------------------------------------------------------------------

def _num(x: float, scale: float = 100, digits: int = 2, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x * scale:{'+' if sign else ''}.{digits}f}"


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


def table1_display(a: Analysis) -> pd.DataFrame:
    t = a.table1
    show = {"Method": t.method.map(figures.label), "Seeds": t.seeds.astype(str)}
    for k in a.task.metrics:
        show[f"{k} single"] = [f"{_num(m)} ± {_num(s)}" for m, s in zip(t[f"{k}_single"], t[f"{k}_single_std"],
                                                                        strict=True)]
        show[f"{k} ensemble"] = [_num(e) + mark for e, mark in zip(t[f"{k}_ensemble"], t[f"{k}_mark"], strict=True)]
        show[f"{k} diff"] = [_num(d, sign=True) for d in t[f"{k}_diff"]]
        show[f"{k} Δ BASELINE [{round(100 * a.level)}% CI]"] = [
            "—" if not np.isfinite(g) else f"{_num(g, sign=True)} [{_num(lo, sign=True)}, {_num(hi, sign=True)}]"
            for g, lo, hi in zip(t[f"{k}_gain"], t[f"{k}_gain_ci_low"], t[f"{k}_gain_ci_high"], strict=True)]
    return pd.DataFrame(show)


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


# ---- document blocks, rendered as Markdown and HTML ------------------------------------------------

Block = tuple[str, object]  # ("h1" | "h2" | "p" | "ul" | "table" | "img", payload)


def _md(blocks: Sequence[Block]) -> str:
    out = []
    for kind, payload in blocks:
        if kind in ("h1", "h2"):
            out.append(f"{'#' * int(kind[1])} {payload}")
        elif kind == "p":
            out.append(str(payload))
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in payload))
        elif kind == "table":
            df: pd.DataFrame = payload
            rows = [list(map(str, df.columns)), ["---"] * len(df.columns), *df.astype(str).to_numpy().tolist()]
            out.append("\n".join("| " + " | ".join(r) + " |" for r in rows))
        elif kind == "img":
            path, alt = payload
            out.append(f"![{alt}]({path.name})")
    return "\n\n".join(out) + "\n"


def _html(blocks: Sequence[Block], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
           "body{font-family:sans-serif;max-width:75em;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
           "text-align:right}td:first-child{text-align:left}img{max-width:100%}</style></head><body>"]
    for kind, payload in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(str(payload))}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(str(payload))}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in payload) + "</ul>")
        elif kind == "table":
            out.append(payload.to_html(index=False, border=0, escape=True))
        elif kind == "img":
            path, alt = payload
            data = base64.b64encode(path.read_bytes()).decode()
            out.append(f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>")
    return "\n".join([*out, "</body></html>\n"])


def _blocks(a: Analysis, figs: dict[str, Path]) -> list[Block]:
    task = a.task
    kind = "scores" if task.is_regression else "class probabilities"
    seeds = "; ".join(f"{figures.label(m)} {len(s)} ({_ranges(s)})" for m, s in a.seeds.items())
    blocks: list[Block] = [
        ("h1", f"Multi-ticket ensembles on {task.folder}"),
        ("p", f"Task {task.name}: {a.examples} dev examples; metrics "
              f"{', '.join(task.metrics)} (headline: {a.headline}). Seeds per method: {seeds}."),
        ("p", f"Protocol: each method's seeds, in seed order, are split into {a.groups} group(s); every "
              f"combination of {', '.join(map(str, a.sizes))} members within a group is an ensemble (the mean "
              f"of its members' {kind}); the ensemble score is the mean over a group's combinations, then over "
              f"groups. Single = mean ± std over all seeds."),
    ]
    if len(a.missing):
        by_method = a.missing.groupby("method", sort=False).seed.apply(list)
        blocks += [("h2", "Missing results"),
                   ("p", "Expected but not (yet) there, so left out of every table:"),
                   ("ul", [f"{figures.label(m)}: seed(s) {_ranges(s)}" for m, s in by_method.items()])]
    if a.notes:
        blocks += [("h2", "Notes"), ("ul", a.notes)]
    blocks += [
        ("h2", "Table 1: single models and ensembles"),
        ("p", f"Scores ×100. Ensemble marks: † better than BASELINE's ensemble, ‡ better than both BASELINE's "
              f"and BASE-LT's (Student's t-test over the combination scores, p < 0.05; p-values in "
              f"table1_ensembles.csv). Diff = ensemble − single. Δ BASELINE = ensemble − BASELINE's ensemble "
              f"with a {round(100 * a.level)}% paired-bootstrap interval over dev examples ({a.resamples} "
              f"resamples), which, unlike the t-test, does not treat overlapping combinations as independent."),
        ("table", table1_display(a)),
    ]
    if not a.table2.empty:
        blocks += [
            ("h2", "Table 2: diversity of members"),
            ("p", "Mean over all pairs of a method's members (deslib's definitions); ↑/↓: higher/lower means "
                  "more diverse. Pairs where a measure is undefined (e.g. ratio errors without common errors) "
                  "are left out of its mean; their counts are in table2_diversity.csv and the notes."),
            ("table", table2_display(a)),
        ]
    if "gain_vs_members" in figs:
        blocks += [
            ("h2", "Figure 3: gain over BASELINE versus ensemble members"),
            ("p", f"{a.headline} of the m-member ensembles minus BASELINE's (×100), mean ± std over "
                  f"combinations (data for every metric in curves.csv)."),
            ("img", (figs["gain_vs_members"], "Figure 3: gain versus members")),
            ("table", curves_display(a)),
        ]
    if not a.overlap.empty:
        blocks += [("h2", "Figure 4: mask overlap between seeds"),
                   ("p", "Intersection over union of the kept weights of two seeds' masks; mean over distinct "
                         "pairs (matrices in mask_iou_<method>.csv)."),
                   ("table", overlap_display(a))]
        if "mask_iou" in figs:
            blocks.append(("img", (figs["mask_iou"], "Figure 4: mask IoU heatmaps")))
    return blocks


def write_report(a: Analysis, out_dir: Path, plots: bool = True) -> ReportSummary:
    """Write every file of the report into out_dir (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"table1_ensembles": a.table1, "table2_diversity": a.table2, "mask_overlap": a.overlap,
              "curves": a.curves, "missing": a.missing}
    tables |= {f"mask_iou_{m}": df.reset_index() for m, df in a.iou.items()}
    csvs = {}
    for name, df in tables.items():
        if name == "table2_diversity" and df.empty:
            continue
        csvs[name] = out_dir / f"{name}.csv"
        df.to_csv(csvs[name], index=False)
    figs: dict[str, Path] = {}
    if plots:
        if a.curves.gain.notna().any():
            figs["gain_vs_members"] = figures.save(
                figures.gain_figure(a.curves, a.headline, f"{a.task.folder}: gain over BASELINE"),
                out_dir / "fig3_gain_vs_members.png")
        if a.iou:
            figs["mask_iou"] = figures.save(figures.iou_figure(a.iou), out_dir / "fig4_mask_iou.png")
    blocks = _blocks(a, figs)
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(_md(blocks))
    page.write_text(_html(blocks, f"mte report: {a.task.folder}"))
    return ReportSummary(out_dir, md, page, csvs, figs, a, tables)


def build_report(rs: ResultSet, out_dir: Path, options: AnalysisOptions | None = None,
                 expected_seeds: Iterable[int] | None = None, expected_methods: Iterable[str] | None = None,
                 plots: bool = True) -> ReportSummary:
    """Analyse `rs` and write the report. `expected_seeds`/`expected_methods`: what the finished sweep
    will hold, so a partial one lists what is missing."""
    return write_report(analyse(rs, options, expected_seeds, expected_methods), out_dir, plots)
