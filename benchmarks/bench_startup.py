"""A sweep's start-up: seconds from the driver's start to its first trial run, with and without the Python workers
Ray prestarts for a driver (`RAY_prestart_worker_first_driver`; mte turns them off for a cluster it starts, since
Tune's trial actors cannot use them). Alternating runs of a tiny sweep (2 BASELINE seeds, 16 pairs, 1 epoch; the
quick preset otherwise), each in a fresh folder.

    python benchmarks/bench_startup.py --pairs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LAYOUTS = {"mte (no prestart)": "0", "Ray's default (prestart)": "1"}
TINY_SWEEP = ["--methods", "baseline", "--seeds", "2", "--train-limit", "16", "--epochs", "1"]


def main() -> None:
    from bench_sweep import run_layout
    from common import default_data_dir, machine_line

    from sweeps.cluster import PRESTART_ENV

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--pairs", type=int, default=5)
    a = p.parse_args()
    print(machine_line(), flush=True)
    found: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for i in range(a.pairs):
        order = list(LAYOUTS) if i % 2 == 0 else list(LAYOUTS)[::-1]
        for name in order:
            os.environ[PRESTART_ENV] = LAYOUTS[name]  # the sweep's process inherits it; mte keeps a value set
            f = run_layout(a.data_dir or default_data_dir(), 2, 1, TINY_SWEEP)
            found[name].append(f["startup"])
            print(f"  pair {i + 1}/{a.pairs}  {name:<25} first trial at {f['startup']:5.2f} s  wall {f['wall']:5.2f} s",
                  flush=True)
    new, old = found.values()
    diffs = [n - o for n, o in zip(new, old, strict=True)]
    print(f"median first trial: {statistics.median(new):.2f} s without prestarted workers, "
          f"{statistics.median(old):.2f} s with them; per pair {', '.join(f'{d:+.2f}' for d in diffs)} s "
          f"(median {statistics.median(diffs):+.2f} s)")


if __name__ == "__main__":
    main()
