"""The report's figures. `matplotlib.figure.Figure` draws with Agg directly: no pyplot, no global backend.
Margins are fixed by hand: constrained layout doubled the time of the report's plotting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def label(method: str) -> str:
    return method.upper()


def gain_figure(curves: pd.DataFrame, metric: str, title: str) -> Figure:
    """Figure 3: gain over BASELINE (×100) against members, band = ±1 std over combinations."""
    fig = Figure(figsize=(6, 4))
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.13, top=0.91)
    ax = fig.add_subplot()
    data = curves[(curves.metric == metric) & curves.gain.notna()]
    for method, d in data.groupby("method", sort=False):
        x, y, s = d.members.to_numpy(), 100 * d.gain.to_numpy(), 100 * d["std"].to_numpy()
        (line,) = ax.plot(x, y, marker="o", label=label(method))
        ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(sorted(curves.members.unique()))
    ax.set_xlabel("ensemble members")
    ax.set_ylabel(f"{metric} − BASELINE's (×100)")
    ax.set_title(title)
    if len(data):
        ax.legend(fontsize="small")
    return fig


def iou_figure(iou: dict[str, pd.DataFrame]) -> Figure:
    """Figure 4: IoU of masks between seeds, one heatmap per method on one colour scale. The diagonal
    (always 1) is left blank, or it would take the whole scale and hide the differences between pairs."""
    width = 3.6 * len(iou) + 1.2
    fig = Figure(figsize=(width, 3.9))
    fig.subplots_adjust(left=0.5 / width, right=1 - 1.0 / width, bottom=0.14, top=0.92, wspace=0.25)
    axes = fig.subplots(1, len(iou), squeeze=False)[0]
    off = np.concatenate([m.to_numpy()[np.triu_indices(len(m), 1)] for m in iou.values()])
    vmin, vmax = (off.min(), off.max()) if off.size else (0.0, 1.0)
    image = None
    for ax, (method, m) in zip(axes, iou.items(), strict=True):
        values = m.to_numpy().astype(float)
        np.fill_diagonal(values, np.nan)
        image = ax.imshow(values, vmin=vmin, vmax=max(vmax, vmin + 1e-9), cmap="viridis")
        ticks = np.arange(len(m))
        ax.set_xticks(ticks, [str(s) for s in m.columns], fontsize=6, rotation=90)
        ax.set_yticks(ticks, [str(s) for s in m.index], fontsize=6)
        ax.set_xlabel("seed")
        ax.set_title(label(method))
    axes[0].set_ylabel("seed")
    fig.colorbar(image, cax=fig.add_axes((1 - 0.8 / width, 0.14, 0.12 / width, 0.78)), label="IoU of kept weights")
    return fig


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=120)
    return path
