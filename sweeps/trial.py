"""What runs inside a trial: one (method, seed), or a chain method's seeds in order (ACTIVE-LT's).

Each seed goes through the science core (`run_seed`, shared hash-keyed store, so work another trial did is
loaded rather than redone) and is then recorded as one nested MLflow run. Progress is reported to the
driver as events (start, fine_tune, done) that feed the live view: by `tune.report` in a Ray Tune trial,
through a queue in a local worker (`sweeps.local`); so this module imports Ray only inside Ray's entry points.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from mte import methods, plugins
from mte.errors import MteError
from mte.hparams import RunSpec
from mte.lottery import run_seed
from mte.masks import Mask
from mte.store import Store
from tracking.trial_runs import finished_hashes, log_seed_result, open_trial_run, recorded_mask

log = logging.getLogger("mte.sweep")

TEST_CRASH_ENV = "MTE_TEST_CRASH"


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune trainable. `config["sweep"]` is shared by all trials, `config["trial"]` comes from the plan."""
    from ray import tune

    sweep, trial = config["sweep"], config["trial"]
    _use_assigned_devices(sweep["cpus_per_trial"])
    run_units(sweep, trial, tune.report, node_info(sweep["cpus_per_trial"]))


def run_units(sweep: dict[str, Any], trial: dict[str, Any], report: Callable[[dict[str, Any]], None],
              node: dict[str, str]) -> None:
    """The trial's seeds in order, each run (or loaded) and recorded; whoever runs the trial says how progress
    reaches the driver (`report`) and which node ran it (`node`, tags of each seed's run)."""
    client = MlflowClient(sweep["tracking_uri"])
    store = trial_store(sweep, client)
    plugins.load_sources(sweep.get("plugins", []))
    base = RunSpec.from_dict(sweep["spec"])
    method = trial["method"]
    chain = methods.get(method).chain
    spec = dataclasses.replace(base, method=dataclasses.replace(base.method, method=method))
    finished = finished_hashes(client, sweep["experiment_id"], sweep["parent_run_id"])
    priors: list[Mask] = []
    for seed in trial["seeds"]:
        unit_hash = trial["hashes"][str(seed)]
        if unit_hash in finished:  # recorded already: the chain needs only its mask, if undamaged
            if not chain:
                continue
            mask, damage = recorded_mask(client, finished[unit_hash])
            if mask is not None:
                priors.append(mask)
                continue
            log.warning("run %s (%s seed %d): its %s; computing the mask again", finished[unit_hash], method, seed,
                        damage)
        start_ms = int(time.time() * 1000)
        report({"event": "start", "seed": seed, "node": node["node.host"]})
        crash = CrashHook.parse(sweep.get("test_crash"), store.root, method, seed)
        crash.at_start()

        def fine_tune_started(index: int, count: int, what: str, seed: int = seed) -> None:
            report({"event": "fine_tune", "seed": seed, "index": index, "count": count, "what": what})

        seed_spec = dataclasses.replace(spec, seed=seed)
        with _system_metrics(client, sweep, unit_hash, seed_spec, start_ms) as open_run:
            result = run_seed(seed_spec, store, sweep["data_dir"], prior_masks=priors if chain else (),
                              on_step=crash.on_step, on_fine_tune=fine_tune_started,
                              epoch_curves=sweep.get("epoch_curves", False))
        run_id = log_seed_result(client, sweep["experiment_id"], sweep["parent_run_id"],
                                 sweep_hash=sweep["sweep_hash"], unit_hash=unit_hash, result=result,
                                 folder=store.path("runs", result.key), start_ms=start_ms,
                                 data_dir=Path(sweep["data_dir"]) if sweep["data_dir"] else None, run_id=open_run,
                                 extra_tags=node)
        report({"event": "done", "seed": seed, "run_id": run_id, "metrics": result.metrics,
                     "sparsity": result.mask.sparsity, "elapsed_s": result.elapsed_s,
                     "reused": all(r.reused for r in result.rounds)})
        if chain:
            priors.append(result.mask)


def trial_store(shared: dict[str, Any], client: MlflowClient) -> Store:
    """The result store of this trial's node: the sweep's path, or (joining a cluster) the node's own; with a
    tracking server, a cache of the shared store in MLflow (`tracking.remote`)."""
    from mte.paths import node_store
    from tracking.remote import MlflowRemote

    remote = MlflowRemote(client, shared["store_run"]) if shared.get("store_run") else None
    return Store(shared["store"] or node_store(), remote)


def node_info(cpus: float) -> dict[str, str]:
    """Which node runs this trial, and what it was given: tags of the trial's MLflow run."""
    import json
    import socket

    import ray

    ctx = ray.get_runtime_context()
    resources = {k: v for k, v in ctx.get_assigned_resources().items() if not k.startswith("node:")}
    gpus = {"node.gpus": ",".join(map(str, ray.get_gpu_ids()))} if ray.get_gpu_ids() else {}
    return {"node.host": socket.gethostname(), "node.ip": ray.util.get_node_ip_address(),
            "node.id": ctx.get_node_id(), "node.resources": json.dumps(resources or {"CPU": cpus}, sort_keys=True),
            **gpus}


@contextlib.contextmanager
def _system_metrics(client: MlflowClient, sweep: dict[str, Any], unit_hash: str, spec: RunSpec, start_ms: int
                    ) -> Iterator[str | None]:
    """With --system-metrics: the trial's run opens now and MLflow samples CPU, memory (and GPU) into it while
    the seed trains; yields its id (None without the option: the run is created once the result exists)."""
    if not sweep.get("system_metrics"):
        yield None
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    run_id = open_trial_run(client, sweep["experiment_id"], sweep["parent_run_id"], sweep_hash=sweep["sweep_hash"],
                            unit_hash=unit_hash, spec=spec, start_ms=start_ms)
    monitor = SystemMetricsMonitor(run_id, sampling_interval=2, samples_before_logging=1,
                                   tracking_uri=sweep["tracking_uri"])
    monitor.start()
    try:
        yield run_id
    finally:
        monitor.finish()


def _use_assigned_devices(cpus: float) -> None:
    """Use a GPU only when Ray assigned one (the core picks CUDA whenever it is visible); one thread per CPU.
    A GPU that CUDA cannot see (declared by `--num-gpus`, or a CPU-only torch on the node) fails the trial in one
    line rather than training on CPUs under a GPU's name."""
    import socket

    import ray
    import torch

    gpus = ray.get_gpu_ids()
    if not gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif not torch.cuda.is_available():
        raise MteError(f"Ray gave this trial GPU {','.join(map(str, gpus))} on {socket.gethostname()}, but torch "
                       "sees no CUDA device there (CPU-only torch, no driver, or a GPU declared by --num-gpus that "
                       "the machine lacks)")
    torch.set_num_threads(max(1, int(cpus)))
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # bars from workers would garble the view


@dataclass
class CrashHook:
    """Test-only fault injection, `MTE_TEST_CRASH=mode:method:seed[,...]` read by the driver.

    `die` ends the worker process at the first training step of that seed, once (a marker file in the
    store lets the retry succeed); `raise` fails every attempt of that seed.
    """

    mode: str | None
    marker: Path | None

    @classmethod
    def parse(cls, spec: str | None, root: Path, method: str, seed: int) -> CrashHook:
        for item in (spec or "").split(","):
            parts = item.strip().split(":")
            if len(parts) == 3 and parts[1] == method and parts[2] == str(seed):
                return cls(parts[0], root / ".test-crash" / f"{parts[0]}-{method}-{seed}")
        return cls(None, None)

    def at_start(self) -> None:
        if self.mode == "raise":
            raise RuntimeError(f"{TEST_CRASH_ENV}: injected failure")

    def on_step(self, done: int, total: int) -> None:
        if self.mode == "die" and self.marker is not None and not self.marker.exists():
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer ends a worker
