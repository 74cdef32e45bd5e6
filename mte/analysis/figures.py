"""The report's figures. `matplotlib.figure.Figure` draws with Agg directly: no pyplot, no global backend.
Margins are fixed by hand: constrained layout doubled the time of the report's plotting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mte import methods as registry

IOU_SCALE = (0.0, 1.0)  # Fig. 4's colours: one fixed scale, comparable across methods and reports


def label(method: str) -> str:
    return registry.label(method)


def caveat(fig: Figure, text: str | None) -> None:
    """The report's verdict on the figure itself: a figure copied out of the report keeps its warning."""
    if text:
        fig.text(0.005, 0.995, f"⚠ {text}", ha="left", va="top", fontsize=8, color="#b34700", fontweight="bold")


def gain_figure(panels: Sequence[tuple[pd.DataFrame, str, str]], warning: str | None = None) -> Figure:
    """Figure 3, one panel per (curves, metric, title): gain over BASELINE (×100) against members; the band is
    ±1 standard deviation of the method's combination scores. Where a size forms one ensemble per method (as many
    seeds as members) there is no spread: the point is drawn hollow and the panel says so. The legend sits right
    of the panels, off the bands."""
    width = 4.6 * len(panels) + 1.9
    fig = Figure(figsize=(width, 4.0))
    fig.subplots_adjust(left=0.7 / width, right=1 - 1.9 / width, bottom=0.13, top=0.86, wspace=0.3)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles: dict[str, object] = {}
    for ax, (curves, metric, title) in zip(axes, panels, strict=True):
        data = curves[(curves.metric == metric) & curves.gain.notna()]
        lone: set[int] = set()
        for i, (method, d) in enumerate(data.groupby("method", sort=False)):
            x, y, s = d.members.to_numpy(), 100 * d.gain.to_numpy(), 100 * d["std"].to_numpy()
            (line,) = ax.plot(x, y, marker="o", color=f"C{i}", label=label(method))
            ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.12, linewidth=0)
            alone = ~np.isfinite(s)
            ax.plot(x[alone], y[alone], linestyle="none", marker="o", markersize=9, markerfacecolor="white",
                    color=line.get_color())
            lone |= set(x[alone].tolist())
            handles.setdefault(label(method), line)
        if lone:
            sizes = ", ".join(map(str, sorted(lone)))
            ax.text(0.02, 0.02, f"hollow (m = {sizes}): one ensemble, no spread, no band", transform=ax.transAxes,
                    fontsize=7, color="0.3")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(sorted(curves.members.unique()))
        ax.set_xlabel("ensemble members")
        ax.set_ylabel(f"{metric} − BASELINE's (×100)")
        ax.set_title(title, fontsize=10)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="center right", fontsize="small",
                   title="line: mean\nband: ±1 sd", title_fontsize="x-small", frameon=False)
    caveat(fig, warning)
    return fig


def iou_figure(iou: dict[str, pd.DataFrame], warning: str | None = None) -> Figure:
    """Figure 4: IoU of masks between seeds, one heatmap per method, the value in each cell. The colour scale is
    fixed (`IOU_SCALE`), so a colour means the same IoU in every method and every report, and near-identical masks
    look near-identical (a scale stretched to the data's range would make 0.97 and 0.98 look far apart). The
    diagonal (always 1) is left blank."""
    n = max(len(m) for m in iou.values())
    side = max(3.6, 0.42 * n + 1.2)
    width = side * len(iou) + 1.3
    fig = Figure(figsize=(width, side + 0.5))
    fig.subplots_adjust(left=0.6 / width, right=1 - 1.1 / width, bottom=0.55 / (side + 0.5), top=0.86, wspace=0.25)
    axes = fig.subplots(1, len(iou), squeeze=False)[0]
    vmin, vmax = IOU_SCALE
    image = None
    for ax, (method, m) in zip(axes, iou.items(), strict=True):
        values = m.to_numpy().astype(float)
        np.fill_diagonal(values, np.nan)
        image = ax.imshow(values, vmin=vmin, vmax=vmax, cmap="viridis")
        ticks = np.arange(len(m))
        size = 8 if len(m) <= 12 else 6
        ax.set_xticks(ticks, [str(s) for s in m.columns], fontsize=size)
        ax.set_yticks(ticks, [str(s) for s in m.index], fontsize=size)
        if len(m) <= 20:
            for i, j in zip(*np.nonzero(~np.isnan(values)), strict=True):
                light = (values[i, j] - vmin) / (vmax - vmin) < 0.6
                ax.text(j, i, f"{values[i, j]:.2f}"[1:] if values[i, j] < 1 else "1", ha="center", va="center",
                        fontsize=7 if len(m) <= 12 else 5.5, color="white" if light else "black")
        ax.set_xlabel("seed")
        ax.set_title(f"{label(method)} (diagonal blank)", fontsize=10)
    axes[0].set_ylabel("seed")
    bar = fig.colorbar(image, cax=fig.add_axes((1 - 0.9 / width, 0.12, 0.12 / width, 0.72)),
                       label=f"IoU of kept weights (fixed scale {vmin:g}–{vmax:g})")
    bar.set_ticks(np.linspace(vmin, vmax, 6), labels=[f"{t:.1f}" for t in np.linspace(vmin, vmax, 6)])
    caveat(fig, warning)
    return fig


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=120)
    return path


def reliability_figure(reliability: pd.DataFrame, calibration: pd.DataFrame, classes: int,
                       warning: str | None = None) -> Figure:
    """Figure 5: reliability diagram per method: accuracy against mean confidence in 15 equal-width bins of the
    top-class probability, single models (pooled over seeds) and Table 1's ensembles; a point's area is its
    bin's share of examples (a nearly empty bin's accuracy says little); grey bars: the ensembles' shares. On the
    diagonal a model is as often right as it is confident."""
    methods = list(dict.fromkeys(reliability.method))
    width = 3.4 * len(methods) + 0.8
    below = 0.05 if warning else 0.0  # room for the warning above the legend
    fig = Figure(figsize=(width, 4.1))
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.2 / width, bottom=0.13, top=0.77 - below, wspace=0.25)
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)[0]
    ece = calibration.set_index("method")
    low = 1.0 / classes
    handles = []
    for ax, method in zip(axes, methods, strict=True):
        d = reliability[reliability.method == method]
        ens = d[d.kind == "ensemble"]
        bars = ax.bar(ens.low, ens.share, width=ens.high - ens.low, align="edge", color="0.87")
        ax.plot([low, 1], [low, 1], color="grey", linestyle="--", linewidth=0.8)
        lines = []
        for i, kind in enumerate(("single", "ensemble")):
            k = d[(d.kind == kind) & (d.share > 0)]
            (line,) = ax.plot(k.confidence, k.accuracy, color=f"C{i}", linewidth=1.2)
            ax.scatter(k.confidence, k.accuracy, s=8 + 300 * k.share, color=f"C{i}", zorder=3)
            lines.append(line)
        handles = [*lines, bars]
        e = [f"{100 * ece.loc[method, f'ece_{kind}']:.1f}" for kind in ("single", "ensemble")]
        ax.set_xlim(max(0.0, low - 0.05), 1.0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence (top-class probability)")
        ax.set_title(f"{label(method)}\nECE ×100: single {e[0]}, ensemble {e[1]}", fontsize=9)
    axes[0].set_ylabel("accuracy in bin")
    fig.legend(handles, ["single models (pooled over seeds)", "Table 1's ensembles", "share of examples (ensembles)"],
               loc="upper center", bbox_to_anchor=(0.5, 1 - below), ncol=3, fontsize="small", frameon=False)
    fig.text(0.5, 0.9 - below, "15 equal-width bins; point area: the bin's share of examples; dashed: perfectly "
             "calibrated", ha="center", fontsize=8, color="0.3")
    caveat(fig, warning)
    return fig
