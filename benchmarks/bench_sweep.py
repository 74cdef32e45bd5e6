"""Sweep overhead: how much of a sweep's wall time × trial slots is fine-tune compute, and what each trial costs
beyond its fine-tunes (Ray worker start, imports, model and data loading, MLflow logging, artifact upload).
Goal: overhead ≤ 5%. Also compares trial layouts on this machine: 2 trials × 1 thread against 1 trial × 2 threads.

    python benchmarks/bench_sweep.py                          # the quick sweep, layouts 2x1 and 1x2
    python benchmarks/bench_sweep.py --layouts 2x1 --methods baseline,bagging
    python benchmarks/bench_sweep.py --timeline                 # also each trial run's start and end
    python benchmarks/bench_sweep.py --layouts 2x1 --seeds 10   # a longer sweep: one group of 10 seeds

It also prints the tightest packing of the trials' own durations on the slots (exact for 1–2 slots): the idle
time even a scheduler without start-up or gaps would leave, because whole trials do not divide evenly.

Each layout runs `mte sweep --preset quick --no-report` in a fresh folder (fresh store and MLflow database), so every
fine-tune is trained once; its compute is the `wall_s` its store record holds (training and evaluation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def run_layout(data_dir: Path, trials: int, threads: int, extra: list[str]) -> dict:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory(prefix="mte-sweep-bench-") as tmp:
        cmd = [sys.executable, "-m", "mte", "sweep", "--preset", "quick", "--no-report", "--no-dashboard",
               "--cpus-per-trial", str(threads), "--data-dir", str(data_dir), *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {"HF_HUB_OFFLINE": "1"}
        began = time.time()
        start = time.perf_counter()
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        ended = time.time()
        if r.returncode != 0:
            raise SystemExit(f"sweep failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}")
        records = Path(tmp, "mte-store").glob("finetunes/*/finetune.json")
        compute = sum(json.loads(p.read_text())["wall_s"] for p in records)
        client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
        ids = [e.experiment_id for e in client.search_experiments()]
        runs = [r for r in client.search_runs(ids, max_results=10_000) if "elapsed_s" in r.data.metrics]
        first = min(r.info.start_time for r in runs) / 1000
        last = max(r.info.end_time for r in runs) / 1000
        durations = [(r.info.end_time - r.info.start_time) / 1000 for r in runs]
        chain = [r for r in runs if r.data.tags.get("method") == "active-lt"]  # one trial runs its seeds in turn
        jobs = [(r.info.end_time - r.info.start_time) / 1000 for r in runs if r not in chain]
        jobs += [(max(r.info.end_time for r in chain) - min(r.info.start_time for r in chain)) / 1000] if chain else []
        return {"wall": wall, "compute": compute, "slots": trials, "trials": len(runs), "startup": first - began,
                "packed": best_makespan(jobs, trials), "jobs": sum(jobs),
                "tail": ended - last, "in_trials": sum(durations),
                "in_calls": sum(r.data.metrics["elapsed_s"] for r in runs),
                "logging": sum(r.data.metrics.get("log_s", 0.0) for r in runs),
                "outside_call": [d - r.data.metrics["elapsed_s"] for d, r in zip(durations, runs, strict=True)],
                "timeline": sorted((r.info.start_time / 1000 - began, r.info.end_time / 1000 - began, r.info.run_name,
                                    r.data.metrics["elapsed_s"]) for r in runs)}


def best_makespan(jobs: list[float], slots: int) -> float:
    """The shortest wall in which `slots` slots can run these trials (each on one slot, none split), with no
    start-up or gaps: exact for 1 or 2 slots (subset sums in 0.1 s steps), a lower bound for more."""
    if slots == 1:
        return sum(jobs)
    if slots > 2:
        return max(sum(jobs) / slots, max(jobs))
    units = [round(j * 10) for j in jobs]
    total, sums = sum(units), {0}
    for u in units:
        sums |= {x + u for x in sums}
    return min(max(x, total - x) for x in sums) / 10


def main() -> None:
    from common import default_data_dir, machine_line

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--layouts", default="2x1,1x2", help="TRIALSxTHREADS, comma-separated (2 cores here)")
    p.add_argument("--methods", default=None, help="override the preset's methods (comma list)")
    p.add_argument("--seeds", type=int, default=None, help="override the preset's seeds (3)")
    p.add_argument("--timeline", action="store_true", help="print each trial run's start and end")
    a = p.parse_args()
    extra = (["--methods", a.methods] if a.methods else []) + (["--seeds", str(a.seeds)] if a.seeds else [])
    print(machine_line())
    for layout in a.layouts.split(","):
        trials, threads = (int(x) for x in layout.split("x"))
        f = run_layout(a.data_dir or default_data_dir(), trials, threads, extra)
        busy = f["compute"] / (f["wall"] * f["slots"])
        print(f"{trials} trial(s) × {threads} thread(s): wall {f['wall']:.1f} s; {f['trials']} trials; fine-tune "
              f"compute {f['compute']:.1f} s over {f['slots']} slot(s) = {busy:.1%} of wall × slots; overhead "
              f"{1 - busy:.1%} (goal ≤ 5%)", flush=True)
        per_trial = (f["in_trials"] - f["compute"]) / f["trials"]
        idle = f["wall"] * f["slots"] - f["in_trials"]
        print(f"  driver start-up to the first trial {f['startup']:.1f} s "
              f"({f['startup'] / f['wall']:.1%} of wall × slots); after the last trial {f['tail']:.1f} s; "
              f"trial runs hold {f['in_trials']:.1f} slot-s, of which {f['in_trials'] - f['compute']:.1f} s is not "
              f"fine-tuning ({per_trial:.1f} s a trial: model, data, store, MLflow logging); slots idle "
              f"{idle:.1f} slot-s (start-up, tail, waiting for ACTIVE-LT's chain, uneven trials); outside the "
              f"seed's call, median {statistics.median(f['outside_call']):.2f} s a trial", flush=True)
        print(f"  of those {f['in_trials'] - f['compute']:.1f} s: {f['in_calls'] - f['compute']:.1f} s in the seeds' "
              f"calls but not training or evaluating (loading the model and data, the store; a model outside "
              f"mte.bert also imports transformers' model code), {f['logging']:.1f} s MLflow logging and artifact "
              f"upload (log_s), {f['in_trials'] - f['in_calls'] - f['logging']:.1f} s the rest of the trial runs",
              flush=True)
        floor = max(0.0, f["packed"] * f["slots"] - f["jobs"])  # the packing is exact to 0.1 s
        print(f"  the trials' own durations packed as tightly as possible on {f['slots']} slot(s): "
              f"{f['packed']:.1f} s; "
              f"slot-s even that leaves idle (trials do not divide evenly over the slots) {floor:.1f} = "
              f"{floor / (f['wall'] * f['slots']):.1%} of wall × slots; the rest of the overhead, "
              f"{1 - busy - floor / (f['wall'] * f['slots']):.1%}, is start-up, tail, per-trial costs and order",
              flush=True)
        for began, ended, name, elapsed in f["timeline"] if a.timeline else ():
            print(f"    {name:<14} {began:6.1f} → {ended:6.1f} s  (seed's call {elapsed:5.1f} s)")

if __name__ == "__main__":
    main()
