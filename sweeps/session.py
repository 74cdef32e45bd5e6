"""What a sweep and a τ search share around their trials: checks before anything starts, the Ray cluster for
the duration, and a Ray Tune fit whose console output is the caller's own view, not Tune's."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from rich.console import Console

from sweeps.cluster import Cluster, RayOptions, check_address, check_local_gpus, check_resources, connect

console = Console(stderr=True)
TUNE_LOGGERS = ("ray.tune", "ray.train", "ray.air")


def preflight(ray: RayOptions) -> None:
    """The Ray options are sane, a cluster to join answers, a local GPU request can be met: before a run, a
    tracking database or a cluster exists."""
    ray.validate()
    if ray.ray_address:
        check_address(ray.ray_address)
    check_local_gpus(ray)


@contextlib.contextmanager
def ray_cluster(ray: RayOptions) -> Iterator[Cluster]:
    """Start or join Ray, check it can give one trial its resources, and leave it as found."""
    cluster = connect(ray)
    try:
        check_resources(ray)
        if cluster.dashboard_url:
            console.print(f"Ray dashboard: {cluster.dashboard_url}", highlight=False)
        yield cluster
    finally:
        cluster.shutdown()


def quiet_fit(tuner: Any) -> Any:
    """`tuner.fit()` without Tune's own console output: callbacks report each trial, and failures get one line
    (Tune would print every traceback)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's newer console output ignores verbose=0
    quiet = [logging.getLogger(n) for n in TUNE_LOGGERS]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)
    try:
        return tuner.fit()
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def run_config(name: str, storage_path: str, callbacks: list, max_failures: int) -> Any:
    from ray import tune

    return tune.RunConfig(name=name, storage_path=storage_path, verbose=0, callbacks=callbacks,
                          failure_config=tune.FailureConfig(max_failures=max_failures))
