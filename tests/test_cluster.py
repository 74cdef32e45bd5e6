"""A real two-node Ray cluster on this machine (both nodes on 127.0.0.1, 1 CPU each, token authentication), each
node with its own result store, nothing shared but a real MLflow server (`--artifacts-destination`): the sweep runs
on both nodes, survives wiped caches and a lost node, and runs as a Ray job. Each step prints what it saw."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
from mlflow import MlflowClient
from servers import answers, free_ports, marked, mlflow_server, stop_marked, wait_for

pytestmark = pytest.mark.slow

MARK = "MTE_TEST_CLUSTER"
HERE = Path(__file__).resolve().parent
RAY_CLI = str(Path(sys.executable).parent / "ray")
RAY_DEFAULT_PORTS = (6379, 8265, 10001, 52365)  # GCS, dashboard, client server, dashboard agent
TINY = ["--train-limit", "32", "--eval-limit", "16", "--epochs", "1", "--max-length", "48", "--batch-size", "16",
        "--rounds", "1", "--no-report", "--max-failures", "3"]


@dataclass
class Cluster:
    address: str
    dashboard: str
    tracking: str
    stores: dict[str, Path]  # node name → its own result store
    env: dict[str, str]  # what a driver (or `ray job submit`) needs: the cluster's token
    temp: Path
    glue: Path
    work: Path

    def sweep(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "mte", "sweep", *args, *TINY, "--data-dir", str(self.glue),
               "--ray-address", self.address, "--tracking-uri", self.tracking]
        return subprocess.run(cmd, cwd=self.work, env=self.env | {"COLUMNS": "200"}, capture_output=True, text=True,
                              timeout=timeout)

    def raylet(self, node: str) -> psutil.Process:
        for p in psutil.process_iter(["name"]):
            with contextlib.suppress(psutil.Error):
                if p.info["name"] == "raylet" and p.environ().get("MTE_STORE") == str(self.stores[node]):
                    return p
        raise AssertionError(f"no raylet of node {node}")

    def wipe(self) -> None:
        for store in self.stores.values():
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir()


def trial_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.role = 'trial'") if exp else []


def ray_ports(head: bool) -> list[str]:
    """Free ports for every server of a `ray start` node that has a fixed default (52365 for the dashboard agent,
    10001 for the client server, 8265 …), so another Ray on this machine cannot make the node fail; the rest
    (GCS on the head aside) Ray already picks at random."""
    names = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
             "--metrics-export-port", "--node-manager-port", "--object-manager-port"]
    if head:
        names += ["--ray-client-server-port"]
    args = [a for name, port in zip(names, free_ports(len(names)), strict=True) for a in (name, str(port))]
    return [*args, "--min-worker-port", "0", "--max-worker-port", "0"]  # 0: each worker its own free port


def start_head(port: int, dashboard: int, temp: Path, env: dict[str, str],
               ports: list[str] | None = None) -> subprocess.CompletedProcess:
    """`ray start --head` on 127.0.0.1:`port` with 1 CPU, its dashboard on `dashboard`, every other server on a
    free port (`ports`: those chosen by `ray_ports`)."""
    return subprocess.run([RAY_CLI, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                           "--num-cpus", "1", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                           "--dashboard-port", str(dashboard), *(ports or ray_ports(head=True)), "--temp-dir",
                           str(temp), "--disable-usage-stats"], env=env | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def cluster(generated_glue, tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    temp = Path(tempfile.mkdtemp(prefix="mte-ray-", dir="/tmp"))  # Ray's socket paths must stay short
    stores = {"a": work / "store-a", "b": work / "store-b"}
    for s in stores.values():
        s.mkdir()
    token = secrets.token_hex(32)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    # Every process this fixture starts, and all they start (Ray's daemons, agents, workers, job drivers), carries
    # the mark in its environment: teardown stops them all, however the test ended.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MTE_RAY_"))} | auth | {MARK: str(temp)}
    mlflow_port, port, dashboard = free_ports(3)
    fast_failure = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
                    "RAY_health_check_failure_threshold": "3"}  # a lost node is noticed in seconds
    try:
        mlflow_server(work, mlflow_port, base, wait=False)  # starts while the Ray nodes do
        head = start_head(port, dashboard, temp, base | fast_failure | {"MTE_STORE": str(stores["a"])})
        assert head.returncode == 0, head.stderr
        worker = subprocess.run([sys.executable, str(HERE / "ray_loopback.py"), "start", "--address",
                                 f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                                 *ray_ports(head=False), "--temp-dir", str(temp), "--disable-usage-stats"],
                                env=base | {"MTE_STORE": str(stores["b"])}, capture_output=True, text=True,
                                timeout=180)
        assert worker.returncode == 0, worker.stderr
        wait_for(lambda: answers(mlflow_port), 90, "the MLflow server")
        c = Cluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", f"http://127.0.0.1:{mlflow_port}",
                    stores, base, temp, generated_glue, work)
        print(f"\ncluster at {c.address} (dashboard {c.dashboard}), MLflow server {c.tracking}, node stores {stores}")
        yield c
    finally:
        killed = stop_marked(MARK, str(temp))
        print(f"\nteardown: processes that ignored SIGTERM for 5 s, killed: {killed or 'none'}")
        shutil.rmtree(temp, ignore_errors=True)


def test_a_head_node_starts_beside_another_rays_ports_and_leaves_no_process(tmp_path):
    """Another Ray's default ports held (those free here) do not stop a head node, whose dashboard agent serves
    HTTP (what `ray job submit` needs) on a port of its own; stopping it leaves no process, SIGTERM or not."""
    temp = Path(tempfile.mkdtemp(prefix="mte-ray-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MTE_RAY_"))} | {MARK: str(temp),
                                                                                "RAY_AUTH_MODE": "disabled"}
    with contextlib.ExitStack() as held:
        ports = []
        for port in RAY_DEFAULT_PORTS:  # as another Ray's would be
            s = held.enter_context(socket.socket())
            with contextlib.suppress(OSError):  # in use already: held by someone else, just as good
                s.bind(("127.0.0.1", port))
                s.listen()
                ports.append(port)
        try:
            chosen = ray_ports(head=True)
            listen = int(chosen[chosen.index("--dashboard-agent-listen-port") + 1])
            head = start_head(*free_ports(2), temp, env, chosen)
            assert head.returncode == 0, head.stderr
            wait_for(lambda: answers(listen), 60, "the dashboard agent's HTTP server")
            started = sorted({p.name() for p in marked(MARK, str(temp))})
        finally:
            killed = stop_marked(MARK, str(temp))
            shutil.rmtree(temp, ignore_errors=True)
    print(f"\nports held as another Ray's: {ports}; head node up, its agent's HTTP on {listen}; processes: "
          f"{started}; stopped, SIGKILL needed for: {killed or 'none'}")
    assert listen not in RAY_DEFAULT_PORTS and "raylet" in started
    assert not marked(MARK, str(temp))


def table1(c: Cluster, experiment: str, out: Path) -> pd.DataFrame:
    r = subprocess.run([sys.executable, "-m", "mte", "report", "--tracking-uri", c.tracking, "--experiment",
                        experiment, "--out", str(out), "--no-log"], cwd=c.work, env=c.env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return pd.read_csv(out / "table1_ensembles.csv")


def test_a_sweep_runs_on_both_nodes_and_reuses_work_through_mlflow_alone(cluster):
    c = cluster
    first = c.sweep("--methods", "baseline,base-lt,active-lt", "--seeds", "2", "--experiment", "two-nodes")
    assert first.returncode == 0, first.stdout + first.stderr
    runs = trial_runs(c.tracking, "two-nodes")
    where = sorted((r.info.run_name, r.data.tags["node.id"][:8], r.data.tags["node.resources"]) for r in runs)
    print("\nwhich trial ran where:", *where, sep="\n  ")
    assert len({r.data.tags["node.id"] for r in runs}) == 2  # both nodes ran trials
    assert all(r.data.tags["node.ip"] == "127.0.0.1" for r in runs)
    # Empty caches on every node: ACTIVE-LT seed 2 is regularised towards the masks of seeds 0 and 1, which
    # now exist only in MLflow, whichever node recorded them.
    c.wipe()
    more = c.sweep("--methods", "baseline,base-lt,active-lt", "--seeds", "3", "--experiment", "two-nodes")
    assert more.returncode == 0, more.stdout + more.stderr
    assert "6 already recorded, 3 to run" in " ".join(more.stderr.split())
    client = MlflowClient(c.tracking)
    active = {int(r.data.tags["seed"]): r for r in trial_runs(c.tracking, "two-nodes")
              if r.data.tags["method"] == "active-lt"}
    results = {s: json.loads(Path(client.download_artifacts(r.info.run_id, "result.json", str(c.work / f"a{s}")))
                             .read_text()) for s, r in active.items()}
    from mte.masks import Mask

    digests = [Mask.load(client.download_artifacts(active[s].info.run_id, "mask.safetensors",
                                                   str(c.work / f"m{s}"))).digest() for s in (0, 1)]
    assert results[2]["prior_masks"] == sorted(digests)
    print(f"after wiping both node stores: seed 2 of ACTIVE-LT ran on node {active[2].data.tags['node.id'][:8]} "
          f"with the masks of seeds 0 and 1 (recorded on nodes {active[0].data.tags['node.id'][:8]}, "
          f"{active[1].data.tags['node.id'][:8]}) read from MLflow")
    before = table1(c, "two-nodes", c.work / "report-before")
    # Wiped again: nothing to run, and the report comes from MLflow alone.
    c.wipe()
    again = c.sweep("--methods", "baseline,base-lt,active-lt", "--seeds", "3", "--experiment", "two-nodes")
    assert again.returncode == 0 and "9 already recorded, 0 to run" in " ".join(again.stderr.split()), again.stderr
    after = table1(c, "two-nodes", c.work / "report-after")
    pd.testing.assert_frame_equal(before, after)
    print("rerun with both stores wiped: 0 trials launched; Table 1 rebuilt from MLflow is identical")


def test_a_sweep_submitted_as_a_ray_job_runs_on_the_cluster(cluster):
    c = cluster
    entry = [sys.executable, "-m", "mte", "sweep", "--methods", "baseline", "--seeds", "1", "--experiment", "job",
             *TINY, "--data-dir", str(c.glue), "--ray-address", c.address, "--tracking-uri", c.tracking]
    for _ in range(10):  # the head's job agent may still be starting: Ray says to try again
        job = subprocess.run([RAY_CLI, "job", "submit", "--address", c.dashboard, "--", *entry], env=c.env,
                             capture_output=True, text=True, timeout=600)
        if "No available agent" not in job.stderr:
            break
        time.sleep(3)
    print(f"\nray job submit … -- mte sweep: exit {job.returncode}; "
          f"{[ln for ln in job.stdout.splitlines() if 'succeeded' in ln.lower()][-1:]}")
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    (run,) = trial_runs(c.tracking, "job")
    assert run.info.status == "FINISHED" and run.data.tags["node.ip"] == "127.0.0.1"


def test_every_node_must_read_the_data_folder_and_one_that_cannot_is_named(cluster):
    c = cluster
    code = ("from pathlib import Path\n"
            "from mte.errors import MteError\n"
            "from sweeps.cluster import RayOptions, check_nodes, connect\n"
            f"connect(RayOptions(ray_address={c.address!r}))\n"
            "from mte.data import data_fingerprint, resolve_data_dir\n"
            "from mte.tasks import get_task\n"
            f"print(check_nodes(Path({str(c.glue)!r}), 'mrpc', data_fingerprint(get_task('mrpc'), "
            f"resolve_data_dir({str(c.glue)!r}))))\n"
            "try:\n"
            "    check_nodes(Path('/nonexistent/glue'), 'mrpc', 'x')\n"
            "except MteError as e:\n"
            "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], env=c.env, capture_output=True, text=True, timeout=300)
    lines = r.stdout.strip().splitlines()
    print(f"\nnodes that read the data: {lines[0]}; a missing folder: {lines[-1]}")
    assert r.returncode == 0 and lines[0] == "2", r.stderr
    assert lines[-1].startswith("node 127.0.0.1 (") and "/nonexistent/glue does not exist" in lines[-1]


def test_a_node_lost_mid_sweep_has_its_trials_retried_on_the_other(cluster):
    c = cluster
    b = c.raylet("b")
    proc = subprocess.Popen([sys.executable, "-m", "mte", "sweep", "--methods", "bagging", "--seeds", "4",
                             "--experiment", "node-loss", *TINY[:-3], "--epochs", "3", "--no-report",
                             "--max-failures", "3", "--data-dir", str(c.glue), "--ray-address", c.address,
                             "--tracking-uri", c.tracking], cwd=c.work, env=c.env | {"COLUMNS": "200"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def training_on_b():
        with contextlib.suppress(psutil.Error):
            return any("ImplicitFunc" in p.name() for p in b.children(recursive=True))
        return False

    wait_for(training_on_b, 300, "a trial training on node b")
    b.kill()
    print(f"\nkill -9 node b's raylet ({b.pid}) while it trained a trial")
    out, _ = proc.communicate(timeout=900)
    runs = trial_runs(c.tracking, "node-loss")
    print(f"sweep exit {proc.returncode}; runs: {sorted((r.info.run_name, r.info.status) for r in runs)}")
    assert proc.returncode == 0, out
    assert sorted(r.info.run_name for r in runs) == [f"bagging-s{s}" for s in range(4)]
    assert all(r.info.status == "FINISHED" for r in runs)
