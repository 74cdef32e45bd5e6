"""A sweep on a local cluster listens on loopback only, with Ray's token authentication on (mte's own 0600 token)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time

import psutil

TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "16"]


def loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def listening(root: psutil.Process) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of `root` and its descendants."""
    out = set()
    for p in [root, *root.children(recursive=True)]:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.add((p.name(), c.laddr.ip, c.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def fresh_ray_env(tmp_path) -> dict[str, str]:
    """This environment without what an in-process sweep test may have set for Ray (a token path, mte's prestart
    setting), with its own config folder (so its own token)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_prestart"))
            } | {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}


def test_a_local_sweep_listens_on_loopback_only_with_token_authentication(generated_glue, tmp_path):
    env = fresh_ray_env(tmp_path)
    cmd = [sys.executable, "-m", "mte", "sweep", "--methods", "baseline,bagging", "--seeds", "2", *TINY,
           "--data-dir", str(generated_glue), "--out", str(tmp_path / "store"), "--no-report",
           "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root, seen = psutil.Process(proc.pid), set()
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= listening(root)
        time.sleep(0.3)
    out, _ = proc.communicate(timeout=60)
    print("\nlistening sockets of the sweep's process tree while it ran:")
    for name, ip, port in sorted(seen, key=lambda x: (x[0], x[2])):
        print(f"  {name:<28} {ip}:{port}")
    assert proc.returncode == 0, out
    names = {name for name, _, _ in seen}
    assert {"gcs_server", "raylet"} <= names and len(seen) >= 8, seen  # the cluster's servers were seen
    exposed = sorted((n, ip, port) for n, ip, port in seen if not loopback(ip))
    assert not exposed, f"listening outside 127.0.0.0/8: {exposed}"
    token = tmp_path / "cfg" / "mte" / "ray_auth_token"
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text()) == 64


STARTS_RAY = """
import sys, time
import psutil
from sweeps.cluster import RayOptions, connect
cluster = connect(RayOptions(num_cpus=2, dashboard=False))
time.sleep(float(sys.argv[1]))  # Ray prestarts its workers about 2 s after the raylet starts
import ray._private.workers
def worker(p):  # named "ray::IDLE" once started; its script's path before
    try:
        return p.name() == "ray::IDLE" or p.cmdline()[1:2] == [ray._private.workers.__path__[0] + "/default_worker.py"]
    except psutil.Error:  # gone meanwhile
        return False
print(sum(worker(p) for p in psutil.Process().children(recursive=True)))
cluster.shutdown()
"""


def test_a_local_cluster_starts_no_python_workers_before_trials_ask_for_them(tmp_path):
    """Tune's trial actors ask for their own runtime environment, so workers Ray prestarts for the driver are
    never used; they only compete with the trials' start for the CPUs."""
    env = fresh_ray_env(tmp_path)
    out = subprocess.run([sys.executable, "-c", STARTS_RAY, "6"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "0", out.stdout
