"""Whole processes, as a user waits for them: `mte run --method baseline --epochs 1` against the Hugging Face GLUE
example's Trainer (`benchmarks/trainer_glue.py`), same lr, batch 32, seed, dev evaluation included, alternating,
at full MRPC and at 1200 training pairs. Prints every run, the medians, per-pair ratios (mte / Trainer), peak memory
of each process tree and dev accuracy. Target: ≤ 0.60× the Trainer's wall time, peak memory ≤ the Trainer's.

    python benchmarks/bench_e2e.py --repeats 3
    python benchmarks/bench_e2e.py --repeats 1 --lr 1e-4        # where MiniLM learns: accuracy within 1 point
    python benchmarks/bench_e2e.py --repeats 3 --lr 1e-4 --vary-seed --sizes 1200   # the same over seeds 0, 1, 2
    python benchmarks/bench_e2e.py --phases                      # mte's own time split (start-up, data, training, …)
    python benchmarks/bench_e2e.py --trainer-malloc tcmalloc     # the Trainer under TCMalloc too (mte.launch)
    MTE_MALLOC=system python benchmarks/bench_e2e.py             # mte on glibc's malloc, as before mte.launch

Each `mte run` gets a fresh result store, so nothing is loaded from an earlier run (the tokenised-data cache too,
unless --warm-cache keeps one store's cache across the repeats: a sweep's case, where 100 trials tokenise once).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def measure(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak resident GB of the process tree, stdout) of one whole process."""
    env = os.environ | (env or {}) | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def watch() -> None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            except psutil.Error:
                rss = 0
            peak[0] = max(peak[0], rss)
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return wall, peak[0] / 1e9, out + err


def accuracy(text: str) -> float:
    m = re.search(r"accuracy (\d\.\d+)", text)
    return float(m.group(1)) if m else float("nan")


def main() -> None:
    from common import default_data_dir, machine_line

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--sizes", default="full,1200", help="Training sizes: 'full' and/or a number of pairs.")
    p.add_argument("--warm-cache", action="store_true", help="One store for every mte run (a warm data cache).")
    p.add_argument("--vary-seed", action="store_true",
                   help="Repeat r uses seed r (both sides) instead of seed 0; accuracy is then the mean over seeds.")
    p.add_argument("--phases", action="store_true", help="Only mte's own time split per size (e2e_phases.py).")
    p.add_argument("--trainer-malloc", choices=("system", "tcmalloc"), default="system",
                   help="The Trainer's allocator: a user's plain `python` (system), or TCMalloc as mte runs.")
    a = p.parse_args()
    data = a.data_dir or default_data_dir()
    from mte.launch import tcmalloc

    lib = tcmalloc()
    if a.trainer_malloc == "tcmalloc" and not lib:
        raise SystemExit("--trainer-malloc tcmalloc: TCMalloc is not installed (Debian: libtcmalloc-minimal4)")
    trainer_env = {"LD_PRELOAD": lib} if a.trainer_malloc == "tcmalloc" else {}
    print(machine_line())
    print(f"the Trainer's malloc: {trainer_env.get('LD_PRELOAD', 'system')} (--trainer-malloc); "
          "MTE_MALLOC=system runs mte on glibc's")
    seeds = list(range(a.repeats)) if a.vary_seed else [0] * a.repeats
    print(f"data {data}; 1 epoch, lr {a.lr:g}, batch 32, seed {'r in repeat r' if a.vary_seed else 0}; "
          f"{a.repeats} repeat(s) per size, alternating order")
    if a.phases:
        for size in a.sizes.split(","):
            limit = [] if size == "full" else ["--train-limit", size]
            print(f"\n{size}:", flush=True)
            subprocess.run([sys.executable, str(REPO / "benchmarks" / "e2e_phases.py"), "--data-dir", str(data),
                            "--lr", str(a.lr), *limit], check=True)
        return
    summary = []
    with tempfile.TemporaryDirectory(prefix="mte-e2e-") as tmp:
        tmp = Path(tmp)
        for size in a.sizes.split(","):
            limit = [] if size == "full" else ["--train-limit", size]
            runs: dict[str, list[tuple[float, float, float]]] = {"mte": [], "trainer": []}
            for r in range(a.repeats):
                order = ("mte", "trainer") if r % 2 == 0 else ("trainer", "mte")
                for who in order:
                    if who == "mte":
                        store = tmp / ("store" if a.warm_cache else f"store-{size}-{r}")
                        cmd = [sys.executable, "-m", "mte", "run", "--method", "baseline", "--epochs", "1", "--lr",
                               str(a.lr), "--seed", str(seeds[r]), "--data-dir", str(data), "--out", str(store), *limit]
                        if a.warm_cache and store.exists():  # keep the data cache, drop results and fine-tunes
                            for kind in ("runs", "finetunes"):
                                shutil.rmtree(store / kind, ignore_errors=True)
                    else:
                        cmd = [sys.executable, str(REPO / "benchmarks" / "trainer_glue.py"), "--data-dir", str(data),
                               "--lr", str(a.lr), "--seed", str(seeds[r]), *limit]
                    wall, peak, out = measure(cmd, tmp, trainer_env if who == "trainer" else None)
                    runs[who].append((wall, peak, accuracy(out)))
                    print(f"{size:>5} repeat {r + 1}/{a.repeats}  {who:<8} {wall:7.1f} s  peak {peak:.2f} GB  "
                          f"dev accuracy {accuracy(out):.4f}" + (f"  seed {seeds[r]}" if a.vary_seed else ""),
                          flush=True)
            import numpy as np

            m, t = np.array(runs["mte"]), np.array(runs["trainer"])
            ratios = m[:, 0] / t[:, 0]
            pairs = ", ".join(f"{x:.3f}" for x in ratios)
            if a.vary_seed:
                acc = (f"mean dev accuracy over seeds {seeds[0]}–{seeds[-1]} {m[:, 2].mean():.4f} vs "
                       f"{t[:, 2].mean():.4f} ({100 * (m[:, 2].mean() - t[:, 2].mean()):+.2f} points)")
            else:
                acc = f"dev accuracy {np.median(m[:, 2]):.4f} vs {np.median(t[:, 2]):.4f}"
            summary.append(f"{size:>5}: mte {np.median(m[:, 0]):.1f} s vs Trainer {np.median(t[:, 0]):.1f} s: "
                           f"{np.median(m[:, 0]) / np.median(t[:, 0]):.3f}× (pairs {pairs}"
                           f"; target ≤ 0.60); peak {np.median(m[:, 1]):.2f} GB vs {np.median(t[:, 1]):.2f} GB "
                           f"(target ≤); {acc}")
    print("\nsummary (medians)")
    for line in summary:
        print("  " + line)


if __name__ == "__main__":
    main()
