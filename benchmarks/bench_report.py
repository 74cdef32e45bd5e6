"""Time of the report for 5 methods × 20 seeds of MRPC-size dev logits (synthetic), target ≤ 2 s.

Prints the computation time (every table, no files or plots) and the total with CSVs, figures,
report.md and report.html. Masks default to 21.3M weights (twice MiniLM's 10.76M prunable ones, so
conservative) so the IoU part is timed at full size.

    python benchmarks/bench_report.py [--seeds 20] [--examples 408] [--mask-size 21300000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from mte.analysis import Member, ResultSet, analyse, build_report
from mte.analysis.overlap import iou_matrix
from mte.hparams import LOTTERY_METHODS, METHODS
from mte.tasks import get_task


def synthetic(seeds: int, examples: int, mask_size: int, rng: np.random.Generator) -> ResultSet:
    """Members ≈ 84% accurate whose errors are partly shared (a common signal plus per-seed noise);
    lottery masks keep 70% of weights, each seed flipping 5% of a shared base mask."""
    task = get_task("mrpc")
    labels = (rng.random(examples) < 0.68).astype(np.int64)
    common = rng.normal(size=examples)
    base = rng.random(mask_size) < 0.7
    members = []
    for j, method in enumerate(METHODS):
        for s in range(seeds):
            margin = 2.0 + 1.5 * common + (0.8 + 0.1 * j) * rng.normal(size=examples)
            z = np.where(labels == 1, margin, -margin) / 2
            logits = np.stack([-z, z], 1).astype(np.float32)
            mask = None
            if method in LOTTERY_METHODS:
                mask = base.copy()
                flip = rng.integers(0, mask_size, mask_size // 20)
                mask[flip] = ~mask[flip]
            members.append(Member(method, s, logits, mask))
    return ResultSet.from_members(task, labels, members)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--examples", type=int, default=408)
    parser.add_argument("--mask-size", type=int, default=21_300_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rs = synthetic(args.seeds, args.examples, args.mask_size, np.random.default_rng(0))
    print(f"{len(rs.methods)} methods × {args.seeds} seeds, {args.examples} dev examples, 2 classes, "
          f"masks of {args.mask_size:,} weights for {len(LOTTERY_METHODS)} lottery methods; "
          f"protocol 2 groups × sizes 2-5, 1000 bootstrap resamples")
    compute, cpu, iou, total = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            analyse(rs)
            compute.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            t0 = time.perf_counter()
            for method in LOTTERY_METHODS:
                iou_matrix([m.mask for m in rs.members[method]])
            iou.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            build_report(rs, Path(tmp) / f"report{r}")
            total.append(time.perf_counter() - t0)

    def line(name: str, times: list[float]) -> str:
        return f"{name:<46} best {min(times):.3f} s  (runs {', '.join(f'{t:.3f}' for t in times)})"

    print(line("computation, all tables (wall):", compute))
    print(line("computation, all tables (CPU, all threads):", cpu))
    print(line("  of which mask IoU, 3 × 20 masks (wall):", iou))
    print(line("total with CSVs, PNGs, report.md/html (wall):", total))
    print(f"load average while running: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")

if __name__ == "__main__":
    main()
