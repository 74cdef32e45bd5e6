"""Starting or joining Ray, and checking that it can give a trial what it asks for.

Ray 2.60 turns token authentication on for new local clusters; a sweep's local cluster binds to
127.0.0.1 and sets `RAY_AUTH_MODE=disabled` (unless the environment says otherwise) so workers and the
dashboard need no token. Joining a cluster (`--ray-address`) leaves authentication to that cluster.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from mte.errors import MteError


@dataclass
class Cluster:
    started_here: bool  # shut it down at the end (not when joining, or when Ray was already up, as in tests)
    dashboard_url: str | None

    def shutdown(self) -> None:
        if self.started_here:
            import ray

            ray.shutdown()


def check_local_gpus(gpus_per_trial: float) -> None:
    """Before starting anything: a local sweep asking for GPUs needs torch to see one."""
    if gpus_per_trial <= 0:
        return
    import torch

    if torch.cuda.device_count() == 0:
        raise MteError(f"--gpus-per-trial {gpus_per_trial:g}: no GPU is visible to torch on this machine "
                       "(CPU-only torch, or no CUDA device); leave it at 0 to train on CPUs")


def connect(address: str | None, num_cpus: int | None, dashboard: bool) -> Cluster:
    import ray

    if ray.is_initialized():
        return Cluster(False, _dashboard_url())
    try:
        if address:
            ctx = ray.init(address=address, logging_level=logging.WARNING)
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            # Worker output stays in Ray's logs: the live view reports each trial, Tune keeps error files.
            ctx = ray.init(num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1",
                           logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise MteError(f"cannot start or join {where}: {str(e).strip().splitlines()[0]}") from None
    url = ctx.dashboard_url
    return Cluster(True, f"http://{url}" if url else None)


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    import ray

    total = ray.cluster_resources()
    for name, want in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial)):
        have = total.get(name, 0.0)
        if want > 0 and have < want:
            flag = "--cpus-per-trial" if name == "CPU" else "--gpus-per-trial"
            raise MteError(f"{flag} {want:g}: the Ray cluster has only {have:g} {name}s")


def _dashboard_url() -> str | None:
    try:
        from ray._private.worker import get_dashboard_url

        url = get_dashboard_url()
    except Exception:  # private API; the URL is a convenience
        return None
    return f"http://{url}" if url else None
