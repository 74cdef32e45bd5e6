"""Where `mte run --method baseline --epochs 1` spends its time and memory, phase by phase, in one process that
does what the command does (through the same core calls). Run by `bench_e2e.py --phases`, or alone:

    python benchmarks/e2e_phases.py --train-limit 1200 --lr 2e-5
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def peak_gb() -> float:
    """Peak resident set so far in GB (10^9 bytes; ru_maxrss is in KiB), as `common.peak_rss_gb`, which this
    script cannot import before it has timed the import of torch."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--lr", type=float, default=2e-5)
    a = p.parse_args()
    marks: list[tuple[str, float, float]] = []
    last = [T0]

    def mark(name: str) -> None:
        now = time.perf_counter()
        marks.append((name, now - last[0], peak_gb()))
        last[0] = now

    import torch

    mark("import torch")
    from mte.cli import app  # noqa: F401  (what `mte` imports before it runs a command)

    mark("import mte (CLI)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import default_data_dir

    from mte import data as data_mod
    from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
    from mte.models import Initial, load_model, prunable_parameters
    from mte.store import Store
    from mte.training import fine_tune, predict
    from mte.workspace import load_data

    spec = RunSpec(DataHparams(train_limit=a.train_limit), ModelHparams(), TrainHparams(lr=a.lr, epochs=1),
                   MethodHparams()).resolved()
    data_dir = a.data_dir or default_data_dir()
    data_mod.data_fingerprint(spec.task, data_dir)
    mark("data fingerprint")
    d = load_data(spec, data_dir)
    mark("read + tokenise train/dev/test")
    net = load_model(spec.model, d.task, spec.seed)
    Initial.capture(net), prunable_parameters(net)
    mark("load model (mte.bert)" if type(net).__module__ == "mte.bert" else "load model")
    out = fine_tune(net, d.task, d.train, d.dev, None, spec.train, spec.seed, d.pad_id)
    mark("fine-tune: train + dev eval")
    predict(net, d.dev, d.pad_id, torch.device("cpu"))
    mark("  of which: dev eval (again)")
    predict(net, d.test, d.pad_id, torch.device("cpu"))
    mark("test eval")
    with tempfile.TemporaryDirectory() as tmp:
        Store(tmp)
    mark("store")
    print(f"train {len(d.train)}, dev {len(d.dev)}, test {len(d.test)} pairs; dev accuracy "
          f"{out.epochs[-1]['accuracy']:.4f}")
    for name, sec, gb in marks:
        print(f"  {name:<34} {sec:7.2f} s   peak so far {gb:.2f} GB")
    print(f"  {'total':<34} {time.perf_counter() - T0:7.2f} s")


if __name__ == "__main__":
    main()
