"""What a sweep and a τ search share around their trials: checks before anything starts, the Ray cluster for
the duration, and a Ray Tune fit whose console output is the caller's own view, not Tune's."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from mte.errors import MteError
from mte.paths import Paths
from sweeps import leftovers
from sweeps.cluster import Cluster, RayOptions, check_address, check_local_gpus, check_resources, connect

console = Console(stderr=True)
T = TypeVar("T")
_ON_RAY_LOST: list[Callable[[], None]] = []
TERMINATED = threading.Event()  # set by the command line's SIGTERM handler
INTERRUPTED = threading.Event()  # set by the command line's SIGINT handler (`mte.cli.interrupts`)


def check_interrupted() -> None:
    """Stop (KeyboardInterrupt) before starting trials if a Ctrl-C came whose KeyboardInterrupt Python swallowed."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
TUNE_LOGGERS = ("ray.tune", "ray.train", "ray.air")


def preflight(ray: RayOptions, tracking_uri: str | None = None) -> None:
    """The Ray options are sane, a cluster to join answers (and is tracked by a server), a local GPU request can
    be met: before a run, a tracking database or a cluster exists."""
    ray.validate()
    if ray.ray_address:
        uri = tracking_uri or ""
        if not uri.startswith(("http://", "https://")):
            raise MteError(f"--ray-address needs an MLflow tracking server (--tracking-uri http://host:port): "
                           f"{uri or 'the default sqlite:///…/mlflow.db'} lives on this machine, which the "
                           "cluster's other nodes cannot write to; start one with `mlflow server --host 0.0.0.0 "
                           "--backend-store-uri sqlite:///mlflow.db --artifacts-destination ./mlartifacts`")
        check_address(ray.ray_address)
    check_local_gpus(ray)


def storage_path(ray: RayOptions, store: Path) -> str:
    """Ray Tune's experiment state: --storage-path (a path is made absolute), else under the driver's store."""
    path = ray.storage_path
    if not path:
        return str(store.resolve() / "ray-tune")
    return path if "://" in path else str(Path(path).expanduser().resolve())


def trial_store_path(paths: Paths, ray: RayOptions) -> str | None:
    """The store path trials use: the driver's (absolute), or None: each node's own (`mte.paths.node_store`)
    when joining a cluster without an explicit --out."""
    if ray.ray_address and paths.store == Paths().store:
        return None
    return str(paths.store.resolve())


def while_ray_starts(ray: RayOptions, work: Callable[[], T]) -> tuple[T, Cluster | None]:
    """`work()` (the driver's MLflow start-up: opening the database, reading what is recorded) in a background
    thread while a local Ray starts in this one (Ray's start wants the main thread), so the two overlap instead
    of adding up (about 4 s of a sweep's start-up). Returns work's result and the started cluster, which
    `ray_cluster` then takes; if work raises, the cluster is shut down first. Joining a cluster (None) is quick
    and stays in order."""
    if ray.ray_address:
        return work(), None
    with ThreadPoolExecutor(1, thread_name_prefix="mte-tracking") as pool:
        pending = pool.submit(work)
        cluster = connect(ray)  # on an error here the pool waits for work, whose result is then dropped
        try:
            return pending.result(), cluster
        except BaseException:
            cluster.shutdown()
            raise


@contextlib.contextmanager
def ray_cluster(ray: RayOptions, started: Cluster | None = None) -> Iterator[Cluster]:
    """Start or join Ray (or take the one `while_ray_starts` started), check it can give one trial its
    resources, and leave it as found."""
    cluster = started or connect(ray)
    try:
        with stopped_if_ray_lost():
            check_resources(ray)
            if cluster.dashboard_url:
                console.print(f"Ray dashboard: {cluster.dashboard_url}", highlight=False)
            yield cluster
    finally:
        cluster.shutdown()


def if_ray_lost(action: Callable[[], None]) -> contextlib.AbstractContextManager[None]:
    """While the block runs, `action` (e.g. closing the parent run as KILLED) is what `stopped_if_ray_lost` does
    before ending the process."""
    @contextlib.contextmanager
    def registered() -> Iterator[None]:
        _ON_RAY_LOST.append(action)
        try:
            yield
        finally:
            _ON_RAY_LOST.remove(action)

    return registered()


@contextlib.contextmanager
def stopped_if_ray_lost(grace: float = 2.0) -> Iterator[None]:
    """While the block runs with a local cluster this process started: SIGTERM sent to the whole process group,
    as systemd and Slurm send it, stops Ray's own processes too, and the driver's Ray calls (Tune stopping its
    trials) then wait a minute for a GCS that no longer answers. A thread watches: once `TERMINATED` is set and
    the node's raylet has been gone `grace` seconds, it runs the registered actions (`if_ray_lost`), says so,
    stops what is left of the cluster and ends the process by SIGTERM (exit status 143 in a shell)."""
    if not leftovers.own():
        yield
        return
    done = threading.Event()

    def watch() -> None:
        lost = None
        while not done.wait(0.25):
            if not TERMINATED.is_set() or leftovers.RELEASED.is_set():
                continue
            alive = "raylet" in leftovers.own().values()
            lost = None if alive else lost or time.monotonic()
            if lost is not None and time.monotonic() - lost >= grace:
                for action in list(_ON_RAY_LOST):
                    with contextlib.suppress(Exception):  # the others still run, and the process still ends
                        action()
                console.print("terminated: finished work is kept (store and MLflow); Ray's processes were "
                              "stopped; run the same command again to continue", highlight=False, soft_wrap=True)
                leftovers.stop_own()
                _die_of(signal.SIGTERM)

    thread = threading.Thread(target=watch, name="mte-ray-lost", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def _die_of(sig: signal.Signals) -> None:
    """End the process by `sig`'s default action, from any thread: Python lets only the main thread (stuck here)
    change a handler, so the C library's `signal` restores the default first."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal(int(sig), 0)  # SIG_DFL
    os.kill(os.getpid(), sig)


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


def plugin_config() -> dict[str, Any]:
    """The plugins this process loaded, for every trial's config (a file's text travels with it, so the nodes of
    a cluster need no copy); nothing where none is loaded."""
    from mte import plugins

    return {"plugins": plugins.loaded()} if plugins.loaded() else {}
