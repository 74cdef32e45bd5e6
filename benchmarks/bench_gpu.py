"""GPU figures: one MiniLM MRPC fine-tune per precision (fp32, tf32, bf16), packing (a fixed set of fine-tunes with
1, 2, 4 and 8 trials sharing one GPU), and the full MRPC protocol (5 methods × 20 seeds, MiniLM). Goal: the full
protocol in ≤ 10 minutes on one H100. The `malloc` stage runs one fine-tune as a whole process under glibc's
malloc and under TCMalloc (what an `mte` command preloads where it is installed, as in the Dockerfile), alternating,
and compares their logits byte for byte. The `bert` stage runs one fine-tune as a whole process with the model
computed by `mte.bert` and by transformers' BertForSequenceClassification (the same weights, head and tokens),
alternating, and compares their logits: bit for bit with `--deterministic`.

    python benchmarks/bench_gpu.py                                # everything, trials through `mte sweep` (Ray)
    python benchmarks/bench_gpu.py --runner core                  # mte sweep --executor local: no Ray
    python benchmarks/bench_gpu.py --stages precision,packing     # leave out the full protocol (the long part)
    python benchmarks/bench_gpu.py --tiny --runner core           # smoke test on any machine (CPU too)
    python benchmarks/bench_gpu.py --stages malloc --tcmalloc /path/libtcmalloc_minimal.so.4
    python benchmarks/bench_gpu.py --runner core --stages bert --deterministic   # mte.bert against transformers

`--runner ray` runs `mte sweep --gpus-per-trial 1/N` (Ray places N trials on the GPU). `--runner core` runs
`mte sweep --executor local --max-concurrent N --gpus-per-trial 1/N`: the same sweep as N worker processes that
share one GPU and one result store, without Ray (for GPU machines that lack it; MLflow records into a sqlite file).
Every stage gets a fresh result store and tracking database. `--deadline` stops the protocol that many seconds
after the start and prints how far it got and the rate it ran at; `--protocol-seconds` bounds the protocol stage
alone. Without CUDA (and without --tiny) it says so and measures nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from mte.training import FineTuneResult

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

STAGES = ("malloc", "bert", "precision", "packing", "protocol")
PER_GPU = (1, 2, 4, 8)


@dataclass(frozen=True)
class Setup:
    data_dir: Path
    model: str
    lr: float | None
    precision: str
    tiny: bool
    transformers_code: bool = False  # the model through transformers even where mte.bert covers it

    def spec(self, method: str = "baseline", seed: int = 0, precision: str | None = None):
        from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams

        data = DataHparams(train_limit=64, eval_limit=32) if self.tiny else DataHparams()
        train = TrainHparams(lr=self.lr, precision=precision or self.precision, epochs=1 if self.tiny else 3)
        return RunSpec(data, ModelHparams(model=self.model), train,
                       MethodHparams(method=method, active_chain="group"), seed=seed).resolved()


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def one_fine_tune(setup: Setup, precision: str) -> tuple[float, float, FineTuneResult, nn.Module]:
    """(wall seconds, dev accuracy, FineTuneResult, the trained model) of one full-train MRPC fine-tune with test
    logits (model loading and tokenising not timed)."""
    import torch

    from mte.models import load_model
    from mte.training import fine_tune
    from mte.workspace import load_data

    spec = setup.spec(precision=precision)
    d = load_data(spec, setup.data_dir)
    net = load_model(spec.model, d.task, spec.seed, transformers_code=setup.transformers_code)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fine_tune(net, d.task, d.train, d.dev, d.test, spec.train, 0, d.pad_id)
    return time.perf_counter() - start, out.epochs[-1]["accuracy"], out, net


# --- malloc and bert stages: whole processes of one fine-tune, two variants alternating ---

def _fine_tune_process(setup: Setup, out_dir: Path, deterministic: bool) -> None:
    """The child of the malloc and bert stages: one fp32 fine-tune; its logits go to `out_dir`, its figures to
    stdout."""
    import json

    import numpy as np
    import torch
    from common import peak_rss_gb

    if deterministic:
        torch.use_deterministic_algorithms(True)
    wall, acc, out, net = one_fine_tune(setup, "fp32")
    np.save(out_dir / "dev.npy", out.dev_logits)
    np.save(out_dir / "test.npy", out.test_logits)
    maps = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
    print(json.dumps({"fine_tune_s": wall, "accuracy": acc, "tcmalloc_mapped": "tcmalloc" in maps,
                      "model_class": f"{type(net).__module__}.{type(net).__name__}",
                      "peak_rss_gb": peak_rss_gb(),
                      "cuda_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else 0.0}))


def _child_env(preload: str | None) -> dict[str, str]:
    """This environment with no malloc replacement preloaded, then `preload` (a library path) if given."""
    from mte.allocator import preload_entries, preloaded_allocator

    kept = [e for e in preload_entries() if e != preloaded_allocator()]
    return os.environ | {"LD_PRELOAD": " ".join(([preload] if preload else []) + kept)}


def _compare(a: Path, b: Path) -> str:
    import numpy as np

    parts = []
    for name in ("dev.npy", "test.npy"):
        x, y = np.load(a / name), np.load(b / name)
        same = x.tobytes() == y.tobytes()
        parts.append(f"{name[:-4]} {'identical' if same else f'max |diff| {np.abs(x - y).max():.2e}'}")
    return ", ".join(parts)


def processes_stage(title: str, variants: list[tuple[str, dict[str, str], list[str]]], argv: list[str],
                    repeats: int) -> None:
    """Whole processes of one fine-tune, `repeats` per variant (label, environment, extra arguments), alternating;
    every run's logits against the first run of the first variant (two runs of one variant show what differs
    between runs anyway, e.g. non-deterministic CUDA kernels)."""
    import json

    print(title, flush=True)
    with tempfile.TemporaryDirectory(prefix="mte-gpu-processes-") as tmp:
        runs: list[tuple[str, Path, float, dict]] = []
        for r in range(repeats):
            for label, env, extra in (variants if r % 2 == 0 else variants[::-1]):
                out = Path(tmp) / f"{len(runs)}"
                out.mkdir()
                cmd = [sys.executable, __file__, *argv, *extra, "--one-fine-tune", str(out)]
                start = time.perf_counter()
                p = subprocess.run(cmd, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - start
                if p.returncode != 0:
                    raise SystemExit(f"{label} run failed:\n{p.stderr[-2000:]}")
                fig = json.loads(p.stdout.strip().splitlines()[-1])
                first = next((o for k, o, *_ in runs if k == variants[0][0]), None)
                same = _compare(first, out) if first is not None else "(the reference)"
                runs.append((label, out, wall, fig))
                print(f"  {label:12s} process {wall:6.1f} s, fine-tune {fig['fine_tune_s']:5.1f} s, dev accuracy "
                      f"{fig['accuracy']:.4f}, peak RSS {fig['peak_rss_gb']:.2f} GB, CUDA peak "
                      f"{fig['cuda_peak_gb']:.2f} GB, TCMalloc mapped: {fig['tcmalloc_mapped']}, model "
                      f"{fig['model_class']}; logits: {same}", flush=True)
        for label, *_ in variants:
            walls = [w for k, _, w, _ in runs if k == label]
            fts = [f["fine_tune_s"] for k, _, _, f in runs if k == label]
            print(f"  {label:12s} median process {statistics.median(walls):.1f} s, fine-tune "
                  f"{statistics.median(fts):.1f} s", flush=True)


def malloc_stage(setup: Setup, lib: str, argv: list[str], repeats: int) -> None:
    """Whole processes under glibc's malloc and under TCMalloc."""
    processes_stage(f"malloc: whole processes of one fp32 fine-tune ({setup.spec().train.epochs} epochs, test "
                    f"scored), {repeats} per allocator, alternating; TCMalloc {lib}",
                    [("system", _child_env(None), []), ("tcmalloc", _child_env(lib), [])], argv, repeats)


def same_forward(setup: Setup) -> str:
    """Dev logits of the freshly loaded model (eval mode, fp32, no TF32) through mte.bert and through transformers'
    model, in this process: their largest difference, or 'identical' where equal bit for bit."""
    from mte.models import load_model
    from mte.training import default_device, predict
    from mte.workspace import load_data

    spec = setup.spec()
    d = load_data(spec, setup.data_dir)
    device = default_device()
    logits = []
    for transformers_code in (False, True):
        net = load_model(spec.model, d.task, spec.seed, transformers_code=transformers_code).to(device)
        logits.append(predict(net, d.dev, d.pad_id, device))  # eval mode, inference mode
    a, b = logits
    return "identical" if a.tobytes() == b.tobytes() else f"max |diff| {abs(a - b).max():.2e}"


def bert_stage(setup: Setup, argv: list[str], repeats: int, deterministic: bool) -> None:
    """mte.bert against transformers' model: one forward in this process, then whole fine-tune processes."""
    print(f"bert: dev logits of the loaded model (eval, fp32), mte.bert vs transformers: {same_forward(setup)}",
          flush=True)
    processes_stage(f"bert: whole processes of one fp32 fine-tune ({setup.spec().train.epochs} epochs, test scored), "
                    f"{repeats} per model code, alternating; deterministic algorithms: {deterministic}",
                    [("mte.bert", dict(os.environ), []), ("transformers", dict(os.environ), ["--transformers-code"])],
                    argv, repeats)


# --- core runner: the product's sweep without Ray (`mte sweep --executor local`), N workers on one GPU ---

ALL_METHODS = ("baseline", "bagging", "base-lt", "active-lt", "random-lt")


def _spec_flags(setup: Setup) -> list[str]:
    flags = ["--data-dir", str(setup.data_dir), "--model", setup.model, "--precision", setup.precision,
             "--active-chain", "group"]
    flags += ["--train-limit", "64", "--eval-limit", "32", "--epochs", "1"] if setup.tiny else ["--epochs", "3"]
    return flags + (["--lr", str(setup.lr)] if setup.lr is not None else [])


def run_core(setup: Setup, workers: int, methods: tuple[str, ...], seeds: int, deadline: float | None = None,
             log=print) -> tuple[float, int, bool]:
    """(wall seconds, fine-tunes trained, finished) of `mte sweep --executor local` (its plan: ACTIVE-LT's chains
    first) with `workers` trials sharing the GPU, in a fresh folder (store and sqlite tracking database); stopped
    by SIGTERM at `deadline` seconds. Fine-tunes trained = the fine-tunes its fresh store holds."""
    import torch

    gpus_per_trial = 1 / workers if torch.cuda.is_available() else 0
    with tempfile.TemporaryDirectory(prefix="mte-gpu-bench-") as tmp:
        cmd = [sys.executable, "-m", "mte", "sweep", "--executor", "local", "--max-concurrent", str(workers),
               "--gpus-per-trial", f"{gpus_per_trial:g}", "--methods", ",".join(methods), "--seeds", str(seeds),
               *_spec_flags(setup), "--out", f"{tmp}/store", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db",
               "--no-report"]
        out = Path(tmp) / "sweep.log"
        start = time.perf_counter()
        with open(out, "w") as f:
            proc = subprocess.Popen(cmd, cwd=tmp, stdout=f, stderr=subprocess.STDOUT,
                                    env=os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
        finished, shown = True, 0
        while proc.poll() is None:
            time.sleep(0.5)
            lines = out.read_text().splitlines()
            for line in lines[shown:]:
                if line.startswith(("done", "failed", "retry")):
                    log(f"  {time.perf_counter() - start:7.1f} s  {line}")
            shown = len(lines)
            if deadline is not None and time.perf_counter() - start > deadline:
                proc.terminate()  # the sweep stops its workers and records what finished
                proc.wait(timeout=60)
                finished = False
        wall = time.perf_counter() - start
        if finished and proc.returncode != 0:
            raise SystemExit(f"sweep failed ({' '.join(cmd)}):\n{out.read_text()[-2000:]}")
        trained = sum(1 for _ in (Path(tmp) / "store" / "finetunes").glob("*/finetune.json"))
        return wall, trained, finished


def run_ray(setup: Setup, gpus_per_trial: float, *args: str) -> float:
    """Wall seconds of `mte sweep` in a fresh folder (fresh store and tracking database)."""
    with tempfile.TemporaryDirectory(prefix="mte-gpu-bench-") as tmp:
        cmd = [sys.executable, "-m", "mte", "sweep", *args, "--gpus-per-trial", str(gpus_per_trial), "--data-dir",
               str(setup.data_dir), "--model", setup.model, "--precision", setup.precision, "--no-report",
               "--no-dashboard"]
        if setup.lr is not None:
            cmd += ["--lr", str(setup.lr)]
        start = time.perf_counter()
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
        wall = time.perf_counter() - start
        if r.returncode != 0:
            raise SystemExit(f"sweep failed ({' '.join(cmd)}):\n{r.stderr[-2000:]}")
        return wall


def main() -> None:
    from common import default_data_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--model", default="minilm")
    p.add_argument("--lr", type=float, default=None, help="peak lr (default: the model's; minilm 1e-4)")
    p.add_argument("--precision", default="fp32", help="precision of the packing and protocol stages")
    p.add_argument("--runner", choices=("ray", "core"), default="ray")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    p.add_argument("--packing-fine-tunes", type=int, default=8, help="dense fine-tunes per packing figure")
    p.add_argument("--protocol-workers", type=int, default=None, help="default: the fastest packing figure's")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--deadline", type=float, default=None,
                   help="stop the protocol this many seconds after the benchmark started")
    p.add_argument("--tiny", action="store_true", help="64 training pairs, 1 epoch: a smoke test on any machine")
    p.add_argument("--precisions", default="fp32,tf32,bf16", help="the precision stage's, comma-separated")
    p.add_argument("--protocol-seconds", type=float, default=None, help="stop the protocol stage after this long")
    p.add_argument("--tcmalloc", default=None, help="the malloc stage's library (default: the one mte preloads)")
    p.add_argument("--malloc-repeats", type=int, default=2, help="whole processes per allocator (or model code)")
    p.add_argument("--deterministic", action="store_true",
                   help="the malloc and bert stages' processes use PyTorch's deterministic algorithms (CUDA runs "
                        "repeat bit for bit), to compare their variants byte for byte")
    p.add_argument("--transformers-code", action="store_true", help=argparse.SUPPRESS)  # the bert stage's child
    p.add_argument("--one-fine-tune", type=Path, default=None, help=argparse.SUPPRESS)  # the malloc stage's child
    a = p.parse_args()
    if a.deterministic:  # cuBLAS needs this before CUDA starts (PyTorch's reproducibility notes)
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    began = time.perf_counter()
    stages = a.stages.split(",")
    name = gpu_name()
    if name is None and not a.tiny:
        print("no CUDA device on this machine: nothing measured (GPU figures need a GPU; see benchmarks/RESULTS.md)")
        return
    setup = Setup(a.data_dir or default_data_dir(), a.model, a.lr, a.precision, a.tiny, a.transformers_code)
    if a.one_fine_tune is not None:
        return _fine_tune_process(setup, a.one_fine_tune, a.deterministic)
    print(f"device: {name or 'CPU (--tiny smoke test)'}; runner {a.runner}; data {setup.data_dir}; model {a.model}",
          flush=True)
    if "malloc" in stages:
        from mte.launch import tcmalloc

        lib = a.tcmalloc or tcmalloc()
        if lib is None:
            print("malloc: TCMalloc is not installed here (--tcmalloc names its library): stage skipped", flush=True)
        else:
            malloc_stage(setup, lib, sys.argv[1:], a.malloc_repeats)
    if "bert" in stages:
        bert_stage(setup, sys.argv[1:], a.malloc_repeats, a.deterministic)
    if "precision" in stages:
        one_fine_tune(setup, "fp32")  # warm-up: CUDA context, cuBLAS handles, kernel selection
        for precision in a.precisions.split(","):
            wall, acc, *_ = one_fine_tune(setup, precision)
            print(f"one MiniLM MRPC fine-tune, {setup.spec().train.epochs} epochs, {precision}: {wall:.1f} s, "
                  f"dev accuracy {acc:.4f}", flush=True)
    best = (None, 0.0)
    if "packing" in stages:
        n = a.packing_fine_tunes
        for per_gpu in PER_GPU:
            if a.runner == "core":
                wall, trained, _ = run_core(setup, per_gpu, ("baseline",), n, log=lambda _: None)
            else:
                wall, trained = run_ray(setup, 1 / per_gpu, "--preset", "quick"), 0
            rate = trained / wall * 60
            print(f"packing, {per_gpu} trial(s) per GPU: {wall:.1f} s for {trained or 'the quick sweep'}"
                  f"{' fine-tunes' if trained else ''} ({rate:.1f} fine-tunes/min)", flush=True)
            if rate > best[1]:
                best = (per_gpu, rate)
    if "protocol" in stages:
        workers = a.protocol_workers or best[0] or 8
        if a.runner == "core":
            print(f"full protocol: {len(ALL_METHODS)} methods × {a.seeds} seeds, {workers} trials per GPU",
                  flush=True)
            left = None if a.deadline is None else a.deadline - (time.perf_counter() - began)
            if a.protocol_seconds is not None:
                left = a.protocol_seconds if left is None else min(left, a.protocol_seconds)
            wall, trained, finished = run_core(setup, workers, ALL_METHODS, a.seeds, left,
                                               log=lambda s: print(s, flush=True))
        else:
            wall = run_ray(setup, 1 / workers, "--methods", "all", "--seeds", str(a.seeds), "--active-chain", "group")
            trained, finished = 0, True
        state = "finished" if finished else f"stopped at its time limit ({wall:.0f} s into the stage)"
        rate = trained / max(wall, 1e-9) * 60
        print(f"full MRPC protocol (5 methods × {a.seeds} seeds, active chain per group, {workers} trials per GPU): "
              f"{state} after {wall / 60:.2f} min, {trained} fine-tunes trained ({rate:.1f}/min)"
              f"{'' if finished else '; not the full protocol'} (goal ≤ 10 min on one H100)", flush=True)


if __name__ == "__main__":
    main()
