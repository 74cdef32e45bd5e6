"""A sweep's trials as worker processes on this machine (`mte sweep --executor local`): for a box with neither
Ray nor a cluster (a GPU node of a batch system, an isolated machine). Nothing here imports Ray.

The plan, the trial function (`sweeps.trial.run_units`), the store, the MLflow records and the live view are a
Ray sweep's; only the scheduling differs. The driver hands trials out one at a time in the plan's order, so the
ACTIVE-LT chains (first in the plan, the critical path) start first. Each worker gets one of the machine's GPUs
(round robin) when the sweep asks for GPUs, else none and `cpus_per_trial` torch threads. A worker that dies
(the OOM killer, a crash in native code) is replaced and its trial retried up to `max_failures` times, as Ray Tune
retries; a trial that raised is retried the same way (it resumes from the store).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import signal
import socket
import traceback
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from mte.errors import MteError
from sweeps.cluster import RayOptions
from sweeps.live import SweepView, error_line

POLL_S = 0.5


def worker_count(options: RayOptions, trials: int, gpus: int) -> int:
    """`--max-concurrent`, else as many trials as the GPUs hold (`--gpus-per-trial` packs several on one) or as
    the CPUs hold (`--cpus-per-trial` each); never more than there are trials."""
    if options.max_concurrent:
        wanted = options.max_concurrent
    elif options.gpus_per_trial > 0:
        wanted = int(gpus / options.gpus_per_trial + 1e-9)
    else:
        wanted = int((os.cpu_count() or 1) / options.cpus_per_trial + 1e-9)
    return max(1, min(wanted, trials))


def visible_gpus(options: RayOptions) -> int:
    """GPUs torch sees, counted only when the sweep asks for GPUs (torch is not imported otherwise)."""
    if options.gpus_per_trial <= 0:
        return 0
    import torch

    return torch.cuda.device_count()


@dataclass
class _Worker:
    process: Any
    inbox: Any
    trial: dict[str, Any] | None = None


def run_local(trials: list[dict[str, Any]], shared: dict[str, Any], view: SweepView, options: RayOptions) -> bool:
    """Run the trials; returns whether Ctrl-C (or SIGTERM) stopped the sweep. Failures end up in `view.errors`."""
    gpus = visible_gpus(options)
    n = worker_count(options, len(trials), gpus)
    ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited CUDA context, locks or threads
    events = ctx.Queue()
    workers: dict[int, _Worker] = {}
    pending, attempts = deque(trials), Counter[str]()

    def start(i: int) -> None:
        env = {"CUDA_VISIBLE_DEVICES": str(i % gpus) if gpus else ""}
        inbox = ctx.Queue()
        process = ctx.Process(target=_work, args=(i, env, options.cpus_per_trial, shared, inbox, events),
                              name=f"mte-worker-{i}", daemon=True)
        process.start()
        workers[i] = _Worker(process, inbox)

    def fail(w: _Worker, line: str) -> None:
        trial, w.trial = w.trial, None
        if trial is None:
            return
        attempts[trial["name"]] += 1
        if attempts[trial["name"]] <= options.max_failures:
            view.retry(trial["name"], line)
            pending.appendleft(trial)  # retried next: a chain keeps its place on the critical path
        else:
            view.failed(trial["name"], line)

    try:
        for i in range(n):
            start(i)
        while pending or any(w.trial is not None for w in workers.values()):
            for w in workers.values():
                if w.trial is None and pending:
                    w.trial = pending.popleft()
                    w.inbox.put(w.trial)
            try:
                kind, i, payload = events.get(timeout=POLL_S)
            except queue.Empty:
                kind = None
            if kind == "report":
                view.event(workers[i].trial["method"], payload)
            elif kind == "end":
                if payload is None:
                    view.ended(workers[i].trial["name"])
                    workers[i].trial = None
                else:
                    fail(workers[i], payload)
            for i, w in list(workers.items()):
                if not w.process.is_alive():
                    if w.trial is None:
                        raise MteError(f"local worker {i} exited (code {w.process.exitcode}) before taking a "
                                       "trial; see the lines above")
                    fail(w, f"its worker process died (exit code {w.process.exitcode})")
                    start(i)
        for w in workers.values():
            w.inbox.put(None)
        for w in workers.values():
            w.process.join(timeout=30)
        return False
    except KeyboardInterrupt:
        return True
    finally:
        for w in workers.values():  # still running after Ctrl-C or an error: their finished seeds are kept
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=10)
        events.close()


def _work(index: int, env: dict[str, str], cpus: float, shared: dict[str, Any], inbox: Any, events: Any) -> None:
    """A worker process: run trials from `inbox` until None, each one's progress and end onto `events`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the driver stops us
    os.environ.update(env | {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    import torch  # after CUDA_VISIBLE_DEVICES is set

    from sweeps.trial import run_units

    threads = max(1, int(cpus))
    torch.set_num_threads(threads)
    resources = {"CPU": threads} | ({"GPU": 1} if env["CUDA_VISIBLE_DEVICES"] else {})
    node = {"node.host": socket.gethostname(), "node.id": f"local-worker-{index}", "executor": "local",
            "node.resources": json.dumps(resources, sort_keys=True)}
    if env["CUDA_VISIBLE_DEVICES"]:
        node["node.gpus"] = env["CUDA_VISIBLE_DEVICES"]  # as a Ray trial tags the GPU it was given
    while (trial := inbox.get()) is not None:
        try:
            run_units(shared, trial, lambda result: events.put(("report", index, result)), node)
            events.put(("end", index, None))
        except Exception as e:
            events.put(("end", index, error_line("".join(traceback.format_exception_only(e)))))

