"""Starting or joining Ray, and checking that it can give a trial what it asks for.

Ray 2.60 turns token authentication on for new local clusters; a sweep's local cluster binds to
127.0.0.1 and sets `RAY_AUTH_MODE=disabled` (unless the environment says otherwise) so workers and the
dashboard need no token. Joining a cluster (`--ray-address`) leaves authentication to that cluster.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import ClassVar

from mte.errors import MteError
from mte.fields import hp


@dataclass(frozen=True)
class RayOptions:
    """Where trials run and what each gets: `mte sweep` and `mte tune-tau` take the same flags, declared here."""

    PANEL: ClassVar[str] = "Ray"
    ray_address: str | None = hp(None, "Join this Ray cluster instead of starting a local one.")
    num_cpus: int | None = hp(None, "CPUs of the local Ray instance (default: all).")
    cpus_per_trial: float = hp(1.0, "CPUs (torch threads) per trial.")
    gpus_per_trial: float = hp(0.0, "GPUs per trial; a fraction lets trials share one GPU.")
    max_concurrent: int | None = hp(None, "At most this many trials at once (default: as resources allow).")
    max_failures: int = hp(2, "Retries of a trial that raised or whose process died.")
    dashboard: bool = hp(True, "Start the Ray dashboard (127.0.0.1) with a local Ray.")

    def validate(self) -> RayOptions:
        if not self.cpus_per_trial > 0 or math.isinf(self.cpus_per_trial):
            raise MteError(f"--cpus-per-trial must be > 0, got {self.cpus_per_trial:g}")
        g = self.gpus_per_trial
        if g < 0 or math.isnan(g) or (g > 1 and g != int(g)):
            raise MteError(f"--gpus-per-trial must be 0, a fraction in (0, 1], or a whole number; got {g:g}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise MteError(f"--max-concurrent must be >= 1, got {self.max_concurrent}")
        if self.max_failures < 0:
            raise MteError(f"--max-failures must be >= 0, got {self.max_failures}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise MteError(f"--num-cpus must be >= 1, got {self.num_cpus}")
        return self

    @property
    def trial_resources(self) -> dict[str, float]:
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}


@dataclass
class Cluster:
    started_here: bool  # shut it down at the end (not when joining, or when Ray was already up, as in tests)
    dashboard_url: str | None

    def shutdown(self) -> None:
        if self.started_here:
            import ray

            ray.shutdown()


def check_local_gpus(ray_options: RayOptions) -> None:
    """Before starting anything: a local sweep asking for GPUs needs torch to see one."""
    gpus_per_trial = ray_options.gpus_per_trial
    if gpus_per_trial <= 0 or ray_options.ray_address:
        return
    import torch

    if torch.cuda.device_count() == 0:
        raise MteError(f"--gpus-per-trial {gpus_per_trial:g}: no GPU is visible to torch on this machine "
                       "(CPU-only torch, or no CUDA device); leave it at 0 to train on CPUs")


def connect(ray_options: RayOptions) -> Cluster:
    import ray

    address, num_cpus, dashboard = ray_options.ray_address, ray_options.num_cpus, ray_options.dashboard
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


def check_resources(ray_options: RayOptions) -> None:
    import ray

    total = ray.cluster_resources()
    for name, want in (("CPU", ray_options.cpus_per_trial), ("GPU", ray_options.gpus_per_trial)):
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
