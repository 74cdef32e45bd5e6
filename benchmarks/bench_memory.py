"""Peak resident memory of one MiniLM fine-tune on real MRPC, in a process of its own: target ≤ 3 GB.

Issue 6, target 4. This process does nothing else: import, tokenise train/dev/test, load the model, run one
`fine_tune` (dev and test logits included), then print the peak resident set (getrusage ru_maxrss), with the
peak after imports and after loading for context. `--trainer` measures transformers.Trainer (the
bench_finetune set-up) instead, for comparison; `--masked` runs the fine-tune with a 30% magnitude mask.

    python benchmarks/bench_memory.py [--epochs 1] [--max-steps N] [--masked] [--trainer]
"""

from __future__ import annotations

import argparse
import sys

from common import (
    add_common_args,
    hf_glue_data,
    load_setup,
    machine_line,
    peak_rss_gb,
    quiet_and_threads,
    run_mte,
    run_trainer,
)

TARGET_GB = 3.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--epochs", type=int, default=1,
                        help="epochs of the fine-tune (the peak does not grow with them)")
    parser.add_argument("--trainer", action="store_true", help="measure transformers.Trainer instead of mte")
    parser.add_argument("--masked", action="store_true", help="mte with a 30%% magnitude mask")
    args = parser.parse_args(argv)
    after_import = peak_rss_gb()
    quiet_and_threads(args.threads)
    print(machine_line(), flush=True)
    setup = load_setup(args)
    if args.trainer:
        hf = hf_glue_data(setup)
        loaded = peak_rss_gb()
        run = run_trainer(setup, hf, args.max_steps)
    else:
        from mte.masks import Mask
        from mte.models import load_model, prunable_parameters
        from mte.pruning import magnitude_prune

        net = load_model(setup.spec.model, setup.task, setup.seed)
        mask = None
        if args.masked:
            weights = {n: p.detach() for n, p in prunable_parameters(net).items()}
            mask = magnitude_prune(weights, Mask.dense(weights), round(0.3 * Mask.dense(weights).total))
        loaded = peak_rss_gb()
        run = run_mte(setup, args.max_steps, mask=mask, net=net, with_test=True,
                      name="mte" + (" masked 30%" if args.masked else ""))
    peak = peak_rss_gb()
    print(f"{run.name}: {run.steps} steps in {run.train_s:.1f} s"
          + (f", dev accuracy {run.dev_accuracy:.4f}" if run.dev_accuracy is not None else " (reduced run)"))
    print(f"peak resident memory: after imports {after_import:.2f} GB, after data and model {loaded:.2f} GB, "
          f"whole fine-tune {peak:.2f} GB (target ≤ {TARGET_GB:.0f} GB: {'met' if peak <= TARGET_GB else 'MISSED'})")


if __name__ == "__main__":
    main(sys.argv[1:])
