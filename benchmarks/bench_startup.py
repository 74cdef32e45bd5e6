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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LAYOUTS = {"mte (no prestart)": "0", "Ray's default (prestart)": "1"}


def first_trial(data_dir: Path, prestart: str) -> tuple[float, float]:
    """(seconds to the first trial run's start, whole wall) of one tiny sweep."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="mte-startup-bench-") as tmp:
        cmd = [sys.executable, "-m", "mte", "sweep", "--preset", "quick", "--no-report", "--no-dashboard",
               "--methods", "baseline", "--seeds", "2", "--train-limit", "16", "--epochs", "1",
               "--data-dir", str(data_dir)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {
            "HF_HUB_OFFLINE": "1", "RAY_prestart_worker_first_driver": prestart}
        began = time.time()
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env)
        wall = time.time() - began
        if r.returncode != 0:
            raise SystemExit(f"sweep failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}")
        client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
        ids = [e.experiment_id for e in client.search_experiments()]
        runs = [r for r in client.search_runs(ids) if "elapsed_s" in r.data.metrics]
        return min(r.info.start_time for r in runs) / 1000 - began, wall


def main() -> None:
    from common import default_data_dir, machine_line

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--pairs", type=int, default=5)
    a = p.parse_args()
    print(machine_line(), flush=True)
    found: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for i in range(a.pairs):
        order = list(LAYOUTS) if i % 2 == 0 else list(LAYOUTS)[::-1]
        for name in order:
            start, wall = first_trial(a.data_dir or default_data_dir(), LAYOUTS[name])
            found[name].append(start)
            print(f"  pair {i + 1}/{a.pairs}  {name:<25} first trial at {start:5.2f} s  wall {wall:5.2f} s",
                  flush=True)
    new, old = found.values()
    diffs = [n - o for n, o in zip(new, old, strict=True)]
    print(f"median first trial: {statistics.median(new):.2f} s without prestarted workers, "
          f"{statistics.median(old):.2f} s with them; per pair {', '.join(f'{d:+.2f}' for d in diffs)} s "
          f"(median {statistics.median(diffs):+.2f} s)")


if __name__ == "__main__":
    main()
