"""Where one fine-tune's steps spend their time, per model code: `mte.bert` against transformers' model, each in
a fresh process (so one's imports cannot change the other), with torch.profiler over steps 21..40 of an MRPC
fine-tune (batch 32, 1 epoch, the real loop). Prints ms per step (host clock between steps 41 and the last, the
device synchronised; no profiling after step 40) and the ops taking the most device time (CPU time without
CUDA) in steps 21..40.

    python benchmarks/profile_step.py --model /tmp/minilm --data-dir .gpu/glue            # both codes
    python benchmarks/profile_step.py --codes mte,mte+transformers-imported               # an import's side effects
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
CODES = ("mte", "transformers", "mte+transformers-imported")
WAIT, WARMUP, ACTIVE = 15, 5, 20


def profile(code: str, model: str, data_dir: Path | None, lr: float, train_limit: int | None, rows: int) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    if code == "mte+transformers-imported":
        import transformers.models.bert.modeling_bert  # noqa: F401
    from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
    from mte.models import load_model
    from mte.training import fine_tune
    from mte.workspace import load_data

    spec = RunSpec(DataHparams(train_limit=train_limit), ModelHparams(model=model), TrainHparams(lr=lr, epochs=1),
                   MethodHparams(method="baseline"), seed=0).resolved()
    d = load_data(spec, data_dir)
    net = load_model(spec.model, d.task, 0, transformers_code=code == "transformers")
    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    marks: dict[int, float] = {}

    # repeat=1: one profiled window; without it the schedule cycles through the whole fine-tune, so the table
    # would hold the last window (a partial one too) and the timed steps after step 41 would include profiling
    with profile(activities=activities, schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE, repeat=1)) as prof:
        def on_step(step: int, total: int) -> None:
            prof.step()
            if step in (WAIT + WARMUP + ACTIVE + 1, total):
                if cuda:
                    torch.cuda.synchronize()
                marks[step] = time.perf_counter()

        out = fine_tune(net, d.task, d.train, d.dev, None, spec.train, 0, d.pad_id, on_step=on_step)
    first, last = sorted(marks)
    print(f"[{code}] model {type(net).__module__}.{type(net).__name__}; {out.steps} steps; steps {first + 1}..{last}: "
          f"{(marks[last] - marks[first]) / (last - first) * 1e3:.2f} ms/step; dev accuracy "
          f"{out.epochs[-1]['accuracy']:.4f}", flush=True)
    if cuda:
        print(f"[{code}] sdp flags: flash {torch.backends.cuda.flash_sdp_enabled()}, mem-efficient "
              f"{torch.backends.cuda.mem_efficient_sdp_enabled()}, math {torch.backends.cuda.math_sdp_enabled()}; "
              f"tf32 {torch.backends.cuda.matmul.allow_tf32}; "
              f"deterministic {torch.are_deterministic_algorithms_enabled()}")
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60), flush=True)


def main() -> None:
    from common import default_data_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--train-limit", type=int, default=None, help="training pairs (default: all)")
    p.add_argument("--codes", default="mte,transformers", help=f"comma-separated, of {', '.join(CODES)}")
    p.add_argument("--rows", type=int, default=18)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child: profile this code
    a = p.parse_args()
    data_dir = a.data_dir or default_data_dir()
    if a.one is not None:
        return profile(a.one, a.model, data_dir, a.lr, a.train_limit, a.rows)
    for code in a.codes.split(","):
        if code not in CODES:
            raise SystemExit(f"unknown code {code!r}: choose from {', '.join(CODES)}")
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", code], check=True)


if __name__ == "__main__":
    main()
