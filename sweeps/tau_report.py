"""What `mte tune-tau` shows: the objective-versus-τ plot (logged on the tuning's parent run) and the table of the
best samples."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sweeps.options import TauOptions

console = Console(stderr=True)


@dataclass
class TuningOutcome:
    """What a tuning found, as `mte tune-tau` shows it and returns it."""

    parent_run_id: str
    tracking_uri: str
    best_tau: float | None
    best_objective: float | None
    best_run_id: str | None
    finished: int
    stopped: int
    failed: int
    plot: Path | None
    errors: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


def plot_objective(o: TauOptions, runs: Sequence[Any], best: Any, path: Path) -> Path | None:
    """Objective versus τ (log x): finished samples filled, early-stopped ones hollow at their last value."""
    from tracking import tau as tracked

    def points(status: str, metric: str) -> tuple[list[float], list[float]]:
        sel = [r for r in runs if r.info.status == status and metric in r.data.metrics]
        return [float(r.data.params["tau"]) for r in sel], [r.data.metrics[metric] for r in sel]

    done, stopped = points("FINISHED", tracked.FINAL), points("KILLED", "objective")
    if not done[0] and not stopped[0]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.scatter(*done, color="tab:blue", label="ran every round", zorder=3)
    if stopped[0]:
        ax.scatter(*stopped, facecolors="none", edgecolors="tab:gray",
                   label="stopped early (value at its last round)", zorder=2)
    if best is not None:
        bt, bv = float(best.data.params["tau"]), best.data.metrics[tracked.FINAL]
        ax.scatter([bt], [bv], marker="*", s=220, color="tab:red", label=f"best τ = {bt:.3g}", zorder=4)
    ax.set_xscale("log")
    ax.set_xlim(o.tau_min / 1.5, o.tau_max * 1.5)
    ax.set_xlabel("τ (L1 coefficient of the masking regulariser)")
    ax.set_ylabel(f"{o.objective} {o.headline} ({o.seeds_per_sample} seeds)")
    ax.set_title(f"{o.spec.data.task} · {o.spec.method.method} · tuned on {o.tune_on}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def print_summary(o: TauOptions, outcome: TuningOutcome, runs: Sequence[Any]) -> None:
    from tracking import tau as tracked

    head = o.headline
    done = sorted((r for r in runs if r.info.status == "FINISHED" and tracked.FINAL in r.data.metrics),
                  key=lambda r: (-r.data.metrics[tracked.FINAL], float(r.data.params["tau"])))
    table = Table(title=f"best τ samples · {o.spec.data.task} {o.spec.method.method} · {o.objective} {head} on "
                        f"{o.tune_on} · {outcome.wall_s:.0f} s")
    for col in ("rank", "τ", "objective", f"ensemble {head}", f"single {head}", "sparsity", "run"):
        table.add_column(col, justify="left" if col == "run" else "right")
    split = "dev" if o.tune_on == "dev" else "holdout"
    for i, r in enumerate(done[:max(o.top, 0)], 1):
        m = r.data.metrics
        table.add_row(str(i), f"{float(r.data.params['tau']):.3g}", f"{m[tracked.FINAL]:.4f}",
                      f"{m.get(f'{split}_ensemble_{head}', math.nan):.4f}",
                      f"{m.get(f'{split}_single_{head}', math.nan):.4f}",
                      f"{m.get('sparsity', math.nan):.1%}", r.info.run_id)
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    say = Console(width=None if sys.stdout.isatty() else 160).print
    say(f"samples: {outcome.finished} ran every round, {outcome.stopped} stopped early, {outcome.failed} failed",
        highlight=False)
    for trial, err in outcome.errors.items():
        console.print(f"[red]failed trial[/] {trial}: {err}", highlight=False)
    if outcome.best_tau is None:
        console.print("no sample ran every round: no best τ recorded (parent run FAILED)", highlight=False)
        return
    say(f"best τ = {outcome.best_tau:.4g} ({o.objective} {head} {outcome.best_objective:.4f} on {o.tune_on}; "
        f"sample run {outcome.best_run_id}), recorded as best_tau on tune-tau run {outcome.parent_run_id}",
        highlight=False)
    if outcome.plot is not None:
        say(f"plot: {outcome.plot} (also in the parent run's artifacts)", highlight=False)
