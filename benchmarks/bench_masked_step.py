"""A masked fine-tune step (30% of prunable weights pruned, masks enforced) vs the dense step: target ≤ 1.02×.

Issue 6, target 3. Both go through mte's real loop (`fine_tune`) on the same batches: the first `--steps`
batches of the MRPC epoch. The mask is magnitude pruning of the pretrained weights (mte.pruning.magnitude_prune)
to `--sparsity`. Every block rewinds the model to the pretrained weights, runs `--steps` steps and drops the
first one (it also allocates AdamW's state); the modes alternate which goes first, and the target figure is the
median over rounds of (masked block time / dense block time). `--l1` also times the masked step with the L1
regulariser of RANDOM-LT/ACTIVE-LT (τ = 1e-4), reported without a target. `--torch-dropout` also times the dense
step with PyTorch's own dropout (nn.Dropout, SDPA's attention dropout) on a second, identical model instead of
mte.dropout's lane masks: the dropout lever, measured on the same batches, interleaved.

    python benchmarks/bench_masked_step.py [--steps 12] [--rounds 6] [--sparsity 0.3] [--l1] [--torch-dropout]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from common import add_common_args, load_average, load_setup, machine_line, median, quiet_and_threads, run_mte

TARGET = 1.02


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--steps", type=int, default=12, help="steps per block (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--sparsity", type=float, default=0.3)
    parser.add_argument("--l1", action="store_true", help="also time masked + L1 regulariser")
    parser.add_argument("--torch-dropout", action="store_true",
                        help="also time the dense step with PyTorch's dropout (the dropout lever)")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step of a block is not timed)")

    from mte.masks import Mask
    from mte.models import Initial, load_model, prunable_parameters
    from mte.pruning import magnitude_prune, random_coefficients
    from mte.training import Regulariser

    quiet_and_threads(args.threads)
    print(machine_line(), flush=True)
    setup = load_setup(args)
    net = load_model(setup.spec.model, setup.task, setup.seed)
    initial = Initial.capture(net)
    prunable = prunable_parameters(net)
    weights = {n: p.detach().clone() for n, p in prunable.items()}
    dense = Mask.dense(weights)
    mask = magnitude_prune(weights, dense, round(args.sparsity * dense.total))
    reg = Regulariser(1e-4, random_coefficients({n: w.shape for n, w in weights.items()}, args.sparsity, args.seed))
    modes = {"dense": (None, None), "masked": (mask, None)} | ({"masked+L1": (mask, reg)} if args.l1 else {})
    stock = None  # the same model with PyTorch's dropout: lane dropout is installed in place, so a second copy
    if args.torch_dropout:
        modes["torch-dropout"] = (None, None)
        stock = load_model(setup.spec.model, setup.task, setup.seed)
    print(f"mask: {mask.sparsity:.1%} of {dense.total:,} prunable weights pruned by magnitude; "
          f"{args.steps} steps per block ({args.steps - 1} timed), {args.rounds} rounds, batch {args.batch_size}",
          flush=True)

    block: dict[str, list[float]] = {m: [] for m in modes}  # wall seconds of the timed steps
    block_cpu: dict[str, list[float]] = {m: [] for m in modes}  # process CPU seconds, all threads
    per_step: dict[str, list[float]] = {m: [] for m in modes}
    names = list(modes)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            lane = name != "torch-dropout"
            model = net if lane else stock
            initial.rewind(model)
            stamps: list[tuple[float, float]] = []
            run_mte(setup, args.steps, mask=modes[name][0], reg=modes[name][1], net=model, name=name, stamps=stamps,
                    lane_dropout=lane)
            steps = np.diff(np.asarray(stamps), axis=0)  # (steps - 1, [wall, cpu])
            block[name].append(float(steps[:, 0].sum()))
            block_cpu[name].append(float(steps[:, 1].sum()))
            per_step[name].extend(steps[:, 0].tolist())
        line = "  ".join(f"{n} {block[n][-1]:.2f} s (CPU {block_cpu[n][-1]:.2f} s)" for n in names)
        print(f"round {r + 1}/{args.rounds}: {line}   [load {load_average()}]", flush=True)

    print("\nsummary")
    for name in names:
        print(f"  {name:<10} median step {1e3 * median(per_step[name]):8.1f} ms   "
              f"blocks: {', '.join(f'{t:.2f}' for t in block[name])} s")
    for name in names[1:]:
        ratio = median([a / b for a, b in zip(block[name], block["dense"], strict=True)])
        cpu = median([a / b for a, b in zip(block_cpu[name], block_cpu["dense"], strict=True)])
        met = "met" if ratio <= TARGET else "MISSED"
        verdict = f"target ≤ {TARGET:.2f}: {met}" if name == "masked" else "no target"
        print(f"  ratio {name} / dense: {ratio:.3f}× wall ({verdict}); {cpu:.3f}× CPU time")
        if name == "torch-dropout":
            print(f"  dropout lever: dense step with lane dropout / with PyTorch's dropout = {1 / ratio:.3f}× wall")
    print(f"  load average at the end: {load_average()}")


if __name__ == "__main__":
    main(sys.argv[1:])
