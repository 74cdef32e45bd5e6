"""The report: `report.md`, a self-contained `report.html` (figures embedded), a CSV per table, PNG figures.

Numbers come from `analyse`; this module only formats them. The document is built once as a list of blocks
and rendered twice (Markdown, HTML), so the two files cannot disagree. Several tasks (one analysis each) make
one report: Table 1 side by side, Fig. 3 as one panel per task, then each task's own sections.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mte.analysis import figures, marks
from mte.analysis.analyse import Analysis, analyse
from mte.analysis.display import (
    calibration_display,
    combined_display,
    curves_display,
    overlap_display,
    ranges,
    table1_display,
    table2_display,
    tests_display,
)
from mte.analysis.document import Block, markdown, page
from mte.analysis.options import AnalysisOptions
from mte.analysis.resultset import ResultSet


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


def _curve_sizes(a: Analysis) -> str:
    """The sizes Fig. 3 really shows: those some group can form, which may stop short of the paper's 1–5."""
    drawn = sorted(int(m) for m in a.curves.members.unique())
    if not drawn:
        return ""
    short = "" if drawn[-1] >= a.curve_sizes[-1] else f" (no group has more than {drawn[-1]} seeds)"
    return f" Fig. 3 uses sizes {ranges(drawn)}{short}."


def _header(a: Analysis) -> list[Block]:
    task = a.task
    kind = "scores" if task.is_regression else f"class {a.options.combine}"
    seeds = "; ".join(f"{figures.label(m)} {len(s)} ({ranges(s)})" for m, s in a.seeds.items())
    sizes = "/".join(map(str, a.sizes))
    protocol = (f"Protocol: seeds are grouped by id (0–9, 10–19, …); within a group every {sizes}-member "
                f"combination is an ensemble (the mean of its members' {kind}); Table 1's ensemble score is the mean "
                f"over a group's combinations, then over groups"
                + (" (the paper's Table 1)" if a.paper_sizes else f" ({sizes} members: NOT the paper's 5)")
                + f".{_curve_sizes(a)} Single = mean ± sample standard deviation over all seeds.")
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


def _holm_line(a: Analysis) -> str | None:
    """Which marks of the headline metric do not survive Holm's adjustment."""
    t = a.tests[(a.tests.metric == a.headline) & (a.tests.difference > 0)
                & (a.tests.p_permutation < a.options.alpha) & ~(a.tests.p_holm < a.options.alpha)]
    if t.empty:
        return None
    names = [f"{figures.label(r.method)} vs {figures.label(r.reference)} ({r.quantity})" for r in t.itertuples()]
    return f"Significant alone but not after Holm's adjustment (p Holm ≥ {a.options.alpha:g}): {', '.join(names)}."


def _task_blocks(a: Analysis, figs: dict[str, Path], level: str, prefix: str) -> list[Block]:
    blocks: list[Block] = []
    if len(a.missing):
        by_method = a.missing.groupby("method", sort=False).seed.apply(list)
        blocks += [(level, "Missing results"),
                   ("p", "Expected but not (yet) there, so left out of every table:"),
                   ("ul", [f"{figures.label(m)}: seed(s) {ranges(s)}" for m, s in by_method.items()])]
    if a.notes:
        blocks += [(level, "Notes"), ("ul", a.notes)]
    alpha = a.options.alpha
    blocks += [
        (level, "Table 1: single models and ensembles"),
        ("p", f"Scores ×100. A mark claims \"better than\" at α = {alpha:g}: the seed-level permutation test's "
              f"one-sided p (H1: this method is better), unadjusted, below {alpha:g}, so a mark is false at rate "
              f"{alpha:g} (checked by simulation). *italic*† better than BASELINE, ***bold italic***‡ better than "
              f"BASELINE and BASE-LT; <u>underlined</u>: the best of the column. Diff = ensemble − single, marked "
              f"when it is larger than BASELINE's diff and the ensemble is marked too; {marks.NO_GAIN}: a diff "
              f"larger than BASELINE's without a better ensemble (weaker single models, not a gain from "
              f"ensembling). Δ BASELINE = ensemble − BASELINE's ensemble, with a {round(100 * a.options.level)}% "
              f"seed-level interval (delete-one-pair jackknife, stratified by seed group). —: not applicable "
              f"(BASELINE's own Δ, winning tickets of dense methods) or not computable (the interval, where a group "
              f"has as many seeds as ensemble members and so cannot lose a pair). Sparsity: the share "
              f"of prunable weights removed (the encoder's linear weights; embeddings, biases, LayerNorm and the "
              f"task head are never pruned), mean over seeds, and in brackets the same removed weights as a share "
              f"of all the model's parameters (embeddings and head included; left out for results recorded "
              f"without the model's size). Winning tickets: seeds whose single "
              f"{a.headline} "
              f"is at least BASELINE's mean − 1 standard deviation (within one sd below the dense models' mean, or "
              f"above) and beats the trivial predictor (Frankle & Carbin; Chen et al.). Every p-value, with its "
              f"Holm adjustment, is in {prefix}table1_ensembles.csv and {prefix}tests.csv."),
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
                  f"false-mark rate is checked by simulation), one-sided (H1: the method is better); the marks "
                  f"use it unadjusted. Holm: the same p adjusted over this report's family of {a.family} one-sided "
                  f"tests (every method, reference, metric, ensemble and diff), which controls the chance of any "
                  f"false mark in the report. Paper's t-test: Student's t-test over the combination scores, "
                  f"two-sided, as in the paper; combinations overlap, so this test is anti-conservative (it finds "
                  f"differences that are not there); — where it is undefined: fewer than two ensembles per method, "
                  f"or every ensemble of both methods scores the same. The two-sided permutation p is in "
                  f"{prefix}tests.csv."),
            ("table", tests_display(a)),
        ]
        line = _holm_line(a)
        if line:
            blocks.append(("p", line))
    if not a.table2.empty:
        blocks += [
            (level, "Table 2: diversity of members"),
            ("p", f"Mean over all pairs of a method's members (deslib's definitions); ↑/↓: higher/lower means "
                  f"more diverse. Pairs where a measure is undefined (e.g. ratio errors without common errors) "
                  f"are left out of its mean; their counts are in {prefix}table2_diversity.csv and the notes."),
            ("table", table2_display(a)),
        ]
    if "gain_vs_members" in figs:
        blocks += [
            (level, "Figure 3: gain over BASELINE versus ensemble members"),
            ("p", f"{a.headline} of the m-member ensembles minus BASELINE's m-member ensembles (×100); the line is "
                  f"the mean over combinations, the band ±1 standard deviation of the method's combination scores "
                  f"(how much one m-member ensemble varies), not a confidence interval. A hollow point has no "
                  f"band: at that size each group forms one ensemble (as many seeds as members), so there is no "
                  f"spread to draw. Data for every metric in {prefix}curves.csv."),
            ("img", (figs["gain_vs_members"], "Figure 3: gain versus members")),
            ("table", curves_display(a)),
        ]
    if not a.overlap.empty:
        blocks += [(level, "Figure 4: mask overlap between seeds"),
                   ("p", f"Intersection over union of the kept weights of two seeds' masks; mean over distinct "
                         f"pairs (matrices in {prefix}mask_iou_<method>.csv). The colour scale is fixed at "
                         f"{figures.IOU_SCALE[0]:g}–{figures.IOU_SCALE[1]:g} for every method and every report, so "
                         f"a colour means the same IoU everywhere and nearly identical masks look nearly identical; "
                         f"the value is written in each cell. The diagonal (a mask with itself, always 1) is left "
                         f"blank."),
                   ("table", overlap_display(a))]
        if "mask_iou" in figs:
            blocks.append(("img", (figs["mask_iou"], "Figure 4: mask IoU heatmaps")))
    if not a.calibration.empty:
        blocks += [
            (level, "Table 3 and Figure 5: calibration of single models and ensembles"),
            ("p", f"NLL: mean −log p(true class). Brier: mean over examples of the squared distance between the "
                  f"class probabilities and the one-hot true class (0 to 2). ECE: 15 equal-width bins of the "
                  f"top-class probability, Σ (share of examples) × |accuracy − confidence|. Single: mean ± sample sd "
                  f"over seeds; ensemble: the mean over Table 1's {'/'.join(map(str, a.sizes))}-member ensembles "
                  f"(their {a.options.combine} averaged). Lower is better for all three. Numbers in "
                  f"{prefix}calibration.csv (and Table 1's CSV), bins in {prefix}reliability.csv. Figure 5: "
                  f"accuracy against confidence in each bin, single models pooled over seeds and Table 1's "
                  f"ensembles; a point's area is its bin's share of examples."),
            ("table", calibration_display(a)),
        ]
        if "reliability" in figs:
            blocks.append(("img", (figs["reliability"], "Figure 5: reliability diagrams")))
    return blocks


def _figure_warning(analyses: Sequence[Analysis]) -> str | None:
    """The line a figure carries when its run cannot support a conclusion (the report's warnings)."""
    hit = [a.task.folder for a in analyses if a.warnings]
    if not hit:
        return None
    where = f" ({', '.join(hit)})" if len(analyses) > 1 else ""
    return f"This run cannot support a conclusion{where}: see the warnings in the report"


def _tables(a: Analysis) -> dict[str, pd.DataFrame]:
    tables = {"table1_ensembles": a.table1, "tests": a.tests, "table2_diversity": a.table2,
              "mask_overlap": a.overlap, "curves": a.curves, "missing": a.missing, "calibration": a.calibration,
              "reliability": a.reliability}
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
            if name in ("table2_diversity", "calibration", "reliability") and df.empty:
                continue
            tables[prefix + name] = df
            csvs[prefix + name] = out_dir / f"{prefix}{name}.csv"
            df.to_csv(csvs[prefix + name], index=False)
        figs: dict[str, Path] = {}
        warn = _figure_warning([a])
        if plots:
            if a.curves.gain.notna().any():
                figs["gain_vs_members"] = figures.save(
                    figures.gain_figure([(a.curves, a.headline, f"{a.task.folder}: gain over BASELINE")], warn),
                    out_dir / f"{prefix}fig3_gain_vs_members.png")
            if not a.reliability.empty:
                figs["reliability"] = figures.save(
                    figures.reliability_figure(a.reliability, a.calibration, a.task.num_labels, warn),
                    out_dir / f"{prefix}fig5_reliability.png")
            if a.iou:
                figs["mask_iou"] = figures.save(figures.iou_figure(a.iou, warn),
                                                out_dir / f"{prefix}fig4_mask_iou.png")
        figs_by_task.append(figs)
    all_figs = {f"{a.task.name}_{k}" if several else k: p for a, f in zip(analyses, figs_by_task, strict=True)
                for k, p in f.items()}
    names = " and ".join(a.task.folder for a in analyses)
    blocks: list[Block] = [("h1", f"Multi-ticket ensembles on {names}")]
    if several:
        if plots and any(a.curves.gain.notna().any() for a in analyses):
            all_figs["gain_vs_members"] = figures.save(figures.gain_figure(
                [(a.curves, a.headline, a.task.folder) for a in analyses], _figure_warning(analyses)),
                out_dir / "fig3_gain_vs_members.png")
        blocks += [("h2", "Table 1: all tasks"),
                   ("p", f"Every metric of each task ×100 (single, ensemble, diff). Marks as in each task's Table 1 "
                         f"below: *italic*† better than BASELINE, ***bold italic***‡ better than BASELINE and "
                         f"BASE-LT (seed-level permutation test, one-sided p below that task's α); a diff is marked "
                         f"only with a marked ensemble; {marks.NO_GAIN}: a diff larger than BASELINE's without a "
                         f"better ensemble (weaker single models, not a gain from ensembling); <u>underlined</u>: the "
                         f"best of the column; —: the method has no results for that task."),
                   ("table", combined_display(analyses))]
        warned = [f"{a.task.folder}: {w}" for a in analyses for w in a.warnings]
        if warned:
            blocks.append(("warn", warned))
        if "gain_vs_members" in all_figs:
            blocks += [("h2", "Figure 3: gain over BASELINE versus ensemble members, per task"),
                       ("img", (all_figs["gain_vs_members"], "Figure 3: one panel per task"))]
    for a, figs in zip(analyses, figs_by_task, strict=True):
        if several:
            blocks.append(("h2", a.task.folder))
        blocks += _header(a)
        blocks += _task_blocks(a, figs, "h3" if several else "h2", f"{a.task.name}_" if several else "")
    md, html_path = out_dir / "report.md", out_dir / "report.html"
    md.write_text(markdown(blocks))
    html_path.write_text(page(blocks, f"mte report: {names}"))
    return ReportSummary(out_dir, md, html_path, csvs, all_figs, analyses, tables)


def build_report(rs: ResultSet, out_dir: Path, options: AnalysisOptions | None = None,
                 expected_seeds: Iterable[int] | None = None, expected_methods: Iterable[str] | None = None,
                 plots: bool = True) -> ReportSummary:
    """Analyse `rs` and write the report. `expected_seeds`/`expected_methods`: what the finished sweep
    will hold, so a partial one lists what is missing."""
    return write_report(analyse(rs, options, expected_seeds, expected_methods), out_dir, plots)
