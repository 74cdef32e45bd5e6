"""`mte run`: one seed of one method through the science core, with progress bars and a table of its rounds."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mte.cli.options import options
from mte.hparams import RunSpec
from mte.paths import Paths

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)


@options(spec=RunSpec, paths=Paths, plugins=True)
def run(
    spec: RunSpec,
    paths: Paths,
    prior_mask: list[Path] | None = typer.Option(
        None, "--prior-mask", help="A chain method (active-lt): final mask file of an earlier seed (repeatable). "
                                   "Without it, the seeds before it in its chain are run (or loaded) first."),
    epoch_curves: bool = typer.Option(False, "--epoch-curves", help="Evaluate dev after every epoch, not only the "
                                      "last (per-epoch metrics in the rounds table's records)."),
    test: bool = typer.Option(False, "--test/--no-test", help="Also evaluate the test split (a sweep does where its "
                              "report reads it; a seed stored without it gains it then, by replaying its last "
                              "fine-tune)."),
) -> None:
    """Run (or load) one seed of one method: IMP + ticket fine-tune, or a dense fine-tune."""
    from mte.lottery import active_chain, run_seed
    from mte.masks import Mask
    from mte.store import Store, check_root

    spec = spec.resolved()
    check_root(paths.store)
    _check_inputs(spec, paths)
    st = Store(paths.store)
    seed = spec.seed
    with _progress() as progress:
        bar = _FineTuneBars(progress)
        chain = spec.method.chain_seeds(seed)
        if spec.method.declared.chain and not prior_mask and len(chain) > 1:
            console.print(f"{spec.method.method} seed {seed} needs the final masks of seeds {chain[0]}..{seed - 1}: "
                          "running (or loading) them first", soft_wrap=True)
            result = active_chain(spec, st, chain, paths.data_dir, on_seed=bar.set_seed,
                                  on_step=bar.step, on_fine_tune=bar.start, test=test,
                                  epoch_curves=epoch_curves)[-1]
        else:
            priors = [Mask.load(p) for p in prior_mask or []]
            result = run_seed(spec, st, paths.data_dir, priors, on_step=bar.step, on_fine_tune=bar.start, test=test,
                              epoch_curves=epoch_curves)
    _print_result(result, st)


def _check_inputs(spec: RunSpec, paths: Paths) -> None:
    """What the run would fail on after loading the model: its files, the store, too few examples to train on."""
    from mte.data import resolve_data_dir
    from mte.lottery import check_inputs
    from sweeps.inputs import check_data_files, check_model_files, check_sizes, check_writable_folder

    check_writable_folder(paths.store, "--out")
    data_dir = resolve_data_dir(paths.data_dir)
    check_data_files(spec, data_dir)
    check_model_files(spec)
    check_sizes(spec, check_inputs(spec, data_dir), (spec.method.method,))


def _progress() -> Progress:
    # 2 redraws a second, not rich's 10: a step takes about a second on a CPU, and at a terminal each redraw costs
    # the training's cores CPU time (24 ms a second at 10 Hz, 6.5 ms at 2 Hz; benchmarks/RESULTS.md).
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False, refresh_per_second=2)


class _FineTuneBars:
    """One progress bar per fine-tune, labelled with the round and sparsity."""

    def __init__(self, progress: Progress):
        self.progress, self.task, self.prefix = progress, None, ""

    def set_seed(self, seed: int) -> None:
        self.prefix = f"seed {seed}: "

    def start(self, index: int, count: int, description: str) -> None:
        self.task = self.progress.add_task(f"{self.prefix}{description}", total=None)

    def step(self, done: int, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=total)


def _print_result(result, store) -> None:
    spec = result.spec
    table = Table(title=f"{spec.data.task} · {spec.method.method} · seed {spec.seed} · model {spec.model.model} "
                        f"· lr {spec.train.lr:g}")
    metric_names = list(result.metrics)
    for col in ["fine-tune", "sparsity", "τ", *metric_names, "wall s", ""]:
        table.add_column(col, justify="right" if col not in ("fine-tune", "") else "left")
    for i, r in enumerate(result.rounds):
        last = i == len(result.rounds) - 1
        name = ("ticket" if len(result.rounds) > 1 else spec.method.method) if last else f"round {i + 1}"
        table.add_row(name, f"{r.sparsity:.1%}", f"{spec.method.tau:g}" if r.regularised else "-",
                      *[f"{r.metrics[m]:.4f}" for m in metric_names], f"{r.wall_s:.1f}",
                      "reused" if r.reused else "")
    out.print(table)
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    out.print(f"dev: {metrics}  sparsity {result.mask.sparsity:.1%}  compute {result.wall_s:.1f}s  "
              f"(this call {result.elapsed_s:.1f}s)")
    where = "loaded from" if result.loaded else "stored in"
    out.print(f"{where} {store.path('runs', result.key)}")
