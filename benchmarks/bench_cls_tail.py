"""The last layer after attention for the [CLS] row only (`mte/cls_tail.py`, lever 11 in RESULTS.md) against the
full last layer, in one process on real MRPC:

- steps: the forward and backward pass of each of an epoch's first `--steps` training batches, with both layers
  back to back on the same batch and weights (the order alternating), so a drift in the machine's speed hits
  both; prints the median of the per-batch ratios and whether logits and gradients were bit-equal;
- whole `fine_tune` calls (1 epoch, dev scored), alternating which goes first; dev logits must be bit-equal.

    LD_PRELOAD=libtcmalloc_minimal.so.4 python benchmarks/bench_cls_tail.py --steps 40 --train-limit 640 --repeats 6
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import default_data_dir, machine_line

from mte import cls_tail, dropout
from mte.data import train_batches
from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from mte.lottery import load_data
from mte.models import load_model
from mte.training import fine_tune

LAYERS = ("first rows", "full")


@contextlib.contextmanager
def last_layer(name: str) -> Iterator[None]:
    """The model's last layer as `name` computes it inside the block (the full one: `cls_tail` never applies)."""
    applies = cls_tail.applies
    if name == "full":
        cls_tail.applies = lambda *args: False
    try:
        yield
    finally:
        cls_tail.applies = applies


def steps(data, spec, count: int) -> None:
    """Forward and backward of each of the first `count` batches under both layers, back to back."""
    net = dropout.install(load_model(spec.model, data.task, 0)).train()
    order = torch.Generator().manual_seed(0)
    batches = train_batches(data.train.lengths, spec.train.batch_size, order, spec.train.group_by_length)[:count]
    ratios, equal = [], True
    for b, index in enumerate(batches):
        batch, labels = data.train.batch(index, data.pad_id), data.train.labels[index]
        took, results = {}, {}
        for name in LAYERS if b % 2 == 0 else LAYERS[::-1]:
            with last_layer(name):
                net.zero_grad(set_to_none=True)
                torch.manual_seed(b)
                start = time.perf_counter()
                logits = net(**batch).logits
                F.cross_entropy(logits, labels).backward()
                took[name] = time.perf_counter() - start
                results[name] = [logits.detach()] + [p.grad for p in net.parameters()]
        ratios.append(took["first rows"] / took["full"])
        equal &= all(torch.equal(a, c) for a, c in zip(results["first rows"], results["full"], strict=True))
    print(f"steps: {len(batches)} batches (forward and backward), median per-batch ratio first rows / full "
          f"{statistics.median(ratios):.3f}× (quartiles {np.quantile(ratios, 0.25):.3f}, "
          f"{np.quantile(ratios, 0.75):.3f}); logits and every gradient bit-equal: {equal}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--train-limit", type=int, default=640, help="training pairs (default 640; 0: all)")
    parser.add_argument("--repeats", type=int, default=6, help="fine-tunes of each layer (0: none)")
    parser.add_argument("--steps", type=int, default=40, help="batches timed step by step (0: none)")
    args = parser.parse_args()
    spec = RunSpec(DataHparams(train_limit=args.train_limit or None), ModelHparams(), TrainHparams(lr=2e-5, epochs=1),
                   MethodHparams(method="baseline"), seed=0).resolved()
    data = load_data(spec, args.data_dir)
    print(machine_line())
    print(f"{len(data.train)} training pairs, 1 epoch, batch 32, seed 0; dev ({len(data.dev)} pairs) scored")
    if args.steps:
        steps(data, spec, args.steps)
    if not args.repeats:
        return
    times: dict[str, list[float]] = {name: [] for name in LAYERS}
    logits: dict[str, np.ndarray] = {}
    for r in range(args.repeats):
        for name in LAYERS if r % 2 == 0 else LAYERS[::-1]:
            with last_layer(name):
                net = load_model(spec.model, data.task, 0)
                start = time.perf_counter()
                out = fine_tune(net, data.task, data.train, data.dev, None, spec.train, 0, data.pad_id)
                times[name].append(time.perf_counter() - start)
            same = np.array_equal(out.dev_logits, logits.setdefault(name, out.dev_logits))
            print(f"  {name:10s} {times[name][-1]:6.2f} s  dev logits as this layer's first run: {same}", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"median: first rows {medians['first rows']:.2f} s vs full {medians['full']:.2f} s: "
          f"{medians['first rows'] / medians['full']:.3f}×; dev logits bit-equal across the layers: "
          f"{np.array_equal(logits['first rows'], logits['full'])}")


if __name__ == "__main__":
    main()
