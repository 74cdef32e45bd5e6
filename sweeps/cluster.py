"""Starting or joining Ray, and checking that it can give a trial what it asks for.

A local cluster listens on 127.0.0.1 only: Ray binds every server (GCS, raylet, object manager, agents, workers)
to the node's IP, and resolves 127.0.0.1 to the machine's network address unless its single-machine mode is on
(`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when ray is imported and inherited by every process it starts). It
also keeps Ray's token authentication on: the token is mte's own (a 0600 file, `$XDG_CONFIG_HOME/mte/
ray_auth_token`), so nothing else can submit work to the cluster; the dashboard asks for it. `RAY_AUTH_MODE=
disabled` in the environment turns it off. Joining a cluster (`--ray-address`) leaves addresses and
authentication to that cluster (see sweeps/README.md), after checking in seconds that its address answers.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mte.errors import MteError, first_line
from mte.fields import hp
from sweeps import leftovers

LOOPBACK = "127.0.0.1"
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 as the node's address
PRESTART_ENV = "RAY_prestart_worker_first_driver"  # read by the raylet this process starts
TOKEN_FILE = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "mte" / "ray_auth_token"
DEFAULT_RAY_PORT = 6379


@dataclass(frozen=True)
class RayOptions:
    """Where trials run and what each gets: `mte sweep` and `mte tune-tau` take the same flags, declared here."""

    PANEL: ClassVar[str] = "Ray"
    ray_address: str | None = hp(None, "Join this Ray cluster instead of starting a local one.")
    num_cpus: int | None = hp(None, "CPUs of the local Ray instance (default: all).")
    num_gpus: int | None = hp(None, "GPUs the local Ray instance declares (default: those it detects). More than "
                                    "the machine has lets --gpus-per-trial packing be tried without them; a trial "
                                    "given a GPU that CUDA cannot see then fails with one line.")
    cpus_per_trial: float = hp(1.0, "CPUs (torch threads) per trial.")
    gpus_per_trial: float = hp(0.0, "GPUs per trial; a fraction lets trials share one GPU.")
    max_concurrent: int | None = hp(None, "At most this many trials at once (default: as resources allow).")
    max_failures: int = hp(2, "Retries of a trial that raised, whose process died or whose node was lost.")
    storage_path: str | None = hp(None, "Where Ray Tune keeps its experiment state: a path or a URI Ray accepts "
                                        "(s3://..., gs://...). Default: <store>/ray-tune on the driver's machine.")
    dashboard: bool = hp(True, "Start the Ray dashboard with a local Ray.")
    dashboard_host: str = hp(LOOPBACK, "Address the local dashboard binds (0.0.0.0 exposes it, e.g. from Docker).")
    dashboard_port: int | None = hp(None, "Port of the local dashboard (default: Ray's, 8265 or the next free one).")

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
        if self.num_gpus is not None:
            if self.ray_address:
                raise MteError("--num-gpus declares the GPUs of a local Ray; a joined cluster's nodes declare their "
                               "own (`ray start --num-gpus N`)")
            if self.num_gpus < 0:
                raise MteError(f"--num-gpus must be >= 0, got {self.num_gpus}")
            if g > self.num_gpus:
                raise MteError(f"--gpus-per-trial {g:g}: --num-gpus {self.num_gpus} declares fewer GPUs than one "
                               "trial asks for")
        if self.dashboard_port is not None and not 1024 <= self.dashboard_port <= 65535:
            raise MteError(f"--dashboard-port must be in 1024..65535, got {self.dashboard_port}")
        if not self.ray_address:
            if self.dashboard:
                _check_host(self.dashboard_host)
            check_token_file()
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

            leftovers.RELEASED.set()  # Ray stopped on purpose, not lost
            ray.shutdown()


def check_local_gpus(ray_options: RayOptions) -> None:
    """Before starting anything: a local sweep asking for GPUs needs torch to see one, unless `--num-gpus`
    declares them (then the declaration is the user's word, and a warning says what torch sees)."""
    gpus_per_trial = ray_options.gpus_per_trial
    if gpus_per_trial <= 0 or ray_options.ray_address:
        return
    import torch

    seen = torch.cuda.device_count()
    if ray_options.num_gpus is not None:
        if seen < ray_options.num_gpus:
            logging.getLogger("mte").warning("--num-gpus %d: torch sees %d GPU(s) here; a trial given one it cannot "
                                             "see fails", ray_options.num_gpus, seen)
        return
    if seen == 0:
        raise MteError(f"--gpus-per-trial {gpus_per_trial:g}: no GPU is visible to torch on this machine "
                       "(CPU-only torch, or no CUDA device); leave it at 0 to train on CPUs")


def connect(ray_options: RayOptions) -> Cluster:
    address, num_cpus, dashboard = ray_options.ray_address, ray_options.num_cpus, ray_options.dashboard
    if address:
        check_address(address)
        if _loopback(address):  # a cluster on this machine's loopback: this driver's node address is 127.0.0.1 too
            _single_machine()
    else:
        local_cluster_environment()
        if stopped := leftovers.stop_leftovers():
            logging.getLogger("mte").warning("stopped %d process(es) that a local Ray of an earlier, killed mte "
                                             "command left running: %s", len(stopped), ", ".join(stopped))
    import ray

    if ray.is_initialized():
        return Cluster(False, _dashboard_url())
    try:
        with _signals_after():  # Ctrl-C while Ray's processes start: handled once ray.init returns
            if address:
                ctx = ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            else:
                # Worker output stays in Ray's logs: the live view reports each trial, Tune keeps error files.
                ctx = ray.init(address="local", num_cpus=num_cpus, num_gpus=ray_options.num_gpus,
                               include_dashboard=dashboard, dashboard_host=ray_options.dashboard_host,
                               dashboard_port=ray_options.dashboard_port,
                               _node_ip_address=LOOPBACK, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise MteError(f"cannot start or join {where}: {first_line(e)}") from None
    url = ctx.dashboard_url
    return Cluster(True, f"http://{url}" if url else None)


def _single_machine() -> None:
    os.environ[SINGLE_MACHINE_ENV] = "0"
    if "ray" in sys.modules:  # imported already (e.g. by a test): the constant was read from the environment
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def _loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rpartition(":")[0] or address
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def local_cluster_environment() -> None:
    """Loopback-only addresses and mte's own auth token for a cluster this process starts (see the docstring);
    no Python workers prestarted for the driver: Tune's trial actors ask for a runtime environment of their own,
    so Ray would start new workers for them anyway while the prestarted ones compete for the CPUs (about 1 s
    of a 2-core sweep's start-up, benchmarks/RESULTS.md)."""
    _single_machine()
    leftovers.mark()
    os.environ.setdefault(PRESTART_ENV, "0")
    if os.environ.get("RAY_AUTH_MODE", "token").lower() == "disabled":
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
        if not TOKEN_FILE.exists():
            TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(TOKEN_FILE)


def _check_host(host: str) -> None:
    """--dashboard-host is an address of this machine, or a name that resolves to one: Ray would try to bind it
    for a minute, then fail on a port."""
    try:
        family = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    except (OSError, UnicodeError):
        raise MteError(f"--dashboard-host {host!r} is not an IP address or a host name that resolves") from None
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
    except OSError as e:
        raise MteError(f"--dashboard-host {host}: cannot listen there ({e.strerror}); give an address of this "
                       "machine, e.g. 127.0.0.1 or 0.0.0.0") from None


def check_token_file() -> None:
    """The token file a local cluster will use is private to its owner and holds a token, as ssh asks of a key."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() == "disabled" or os.environ.get("RAY_AUTH_TOKEN"):
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or TOKEN_FILE)
    if not path.exists():
        if os.environ.get("RAY_AUTH_TOKEN_PATH"):
            raise MteError(f"RAY_AUTH_TOKEN_PATH names {path}, which does not exist")
        return  # created with mode 0600 when the cluster starts
    try:
        mode = path.stat().st_mode & 0o777
        token = path.read_text().strip() if path.is_file() else None
    except (OSError, UnicodeDecodeError) as e:
        raise MteError(f"cannot read the Ray token file {path} ({first_line(e)})") from None
    if mode & 0o077:
        raise MteError(f"the Ray token file {path} is open to other users (mode {mode:04o}); run `chmod 600 {path}`")
    if not token:
        raise MteError(f"the Ray token file {path} is empty; delete it (mte writes a new one) or put a token in it")


def check_nodes(data_dir: Path | None, task: str, fingerprint: str) -> int:
    """Every live node of a joined cluster reads the same data from `data_dir` as the driver (one line naming a
    node that lacks it); returns the number of nodes. With the hub (no data dir), each node fetches its own."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if data_dir is None:
        return len(nodes)

    @ray.remote(num_cpus=0, max_retries=0)
    def node_fingerprint(path: str, task_name: str) -> str:
        from mte import data
        from mte.tasks import get_task

        return data.data_fingerprint(get_task(task_name), data.resolve_data_dir(path))

    refs = [(n, node_fingerprint.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
             .remote(str(data_dir), task)) for n in nodes]
    for node, ref in refs:
        where = f"node {node.get('NodeManagerAddress')} ({node['NodeID'][:8]})"
        try:
            found = ray.get(ref, timeout=120)
        except Exception as e:  # the task's own error (e.g. MteError: the folder does not exist), or a timeout
            lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
            raise MteError(f"{where} cannot read the data folder {data_dir}: {lines[-1] if lines else e}") from None
        if found != fingerprint:
            raise MteError(f"{where} has other data in {data_dir} than this machine (fingerprint {found} vs "
                           f"{fingerprint})")
    return len(nodes)


def check_address(address: str, timeout: float = 5.0) -> None:
    """A cluster address must answer within `timeout` seconds: `ray.init` would retry for many minutes."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host:
        host, port = target, str(DEFAULT_RAY_PORT)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except ValueError:
        raise MteError(f"--ray-address {address!r} is not host:port (or ray://host:port)") from None
    except OSError as e:
        raise MteError(f"--ray-address {address}: nothing answers at {host}:{port} ({e.strerror or e}); start the "
                       "cluster's head there (ray start --head) or fix the address") from None


@contextmanager
def _signals_after() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs and raise them after it (main thread only)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    handlers = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    for sig in caught[:1]:
        signal.raise_signal(sig)


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
