"""Every `mte` command exits once its work is done: a real `python -m mte` process against a real `mlflow server`
(whose artifact uploads leave thread pools behind) must end by itself within a deadline, and its local Ray with it.
Each prints how long the process took to exit."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient
from servers import free_port, mlflow_server, wait_for

pytestmark = pytest.mark.slow

TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "16",
        "--rounds", "1"]
SWEEP_DEADLINE_S = 300
REPORT_DEADLINE_S = 60


def ray_processes(temp: Path) -> list[str]:
    """Processes of the Ray whose session lives under `temp` (Ray names its temp dir on their command lines)."""
    found = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        if any(str(temp) in c for c in p.info["cmdline"] or []):
            found.append(f"{p.info['pid']} {p.info['name']}")
    return found


def kill_all(temp: Path) -> None:
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(temp) in c for c in p.info["cmdline"] or []):
                p.kill()


def run_to_exit(args: list[str], cwd: Path, env: dict[str, str], deadline: float) -> tuple[int, str, str, float]:
    """`python -m mte *args` to its exit: (exit code, stdout, stderr, seconds); fails the test past `deadline`,
    after killing the process group (a hung command must not outlive the test)."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "mte", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"`mte {args[0]}` did not exit within {deadline:.0f} s; stderr tail:\n{err[-2000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err, time.monotonic() - start


@pytest.fixture(scope="module")
def served(generated_glue, tmp_path_factory):
    """A real `mlflow server` on a free loopback port, and an environment whose Ray sessions live in a temp dir of
    the test's own (to find every process a sweep's local Ray started)."""
    root = tmp_path_factory.mktemp("exit")
    temp = Path(tempfile.mkdtemp(prefix="mte-exit-", dir="/tmp"))  # Ray's socket paths must stay short
    port = free_port()
    server = mlflow_server(root, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MTE_RAY_"))} | {
        "RAY_TMPDIR": str(temp), "COLUMNS": "60", "HF_HUB_OFFLINE": "1"}  # narrow: progress lines must not wrap
    try:
        yield f"http://127.0.0.1:{port}", root, temp, env
    finally:
        kill_all(temp)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def swept(served, generated_glue):
    uri, root, temp, env = served
    # Two seeds: the sweep ends with its report, read back (downloaded) from the server.
    args = ["sweep", "--methods", "baseline", "--seeds", "2", *TINY, "--data-dir", str(generated_glue), "--out",
            str(root / "store"), "--tracking-uri", uri, "--experiment", "exit", "--no-dashboard", "--num-cpus", "1"]
    code, out, err, took = run_to_exit(args, root, env, SWEEP_DEADLINE_S)
    time.sleep(2)  # what Ray's own shutdown still stops
    left = ray_processes(temp)
    print(f"\nmte sweep against {uri}: exit {code} after {took:.1f} s; Ray processes left: {left or 'none'}")
    return code, out, err, left


def test_a_sweep_against_a_tracking_server_exits_by_itself_and_stops_its_ray(served, swept):
    uri = served[0]
    code, out, err, left = swept
    assert code == 0, out + err
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("exit")
    runs = client.search_runs([exp.experiment_id])
    assert sorted((r.data.tags["role"], r.info.status) for r in runs) == [
        ("sweep", "FINISHED"), ("trial", "FINISHED"), ("trial", "FINISHED")]
    assert "report:" in err  # it downloaded the trials' artifacts from the server
    assert not left
    # piped (a log file) and narrower than its lines, each trial's progress line is still one whole line
    done = re.findall(r"^done +baseline-s\d +accuracy \S+ +f1 \S+ +sparsity \S+ +\d+ s\b.*$", out + err, re.M)
    assert len(done) == 2, out + err


def test_a_report_that_fails_after_reading_the_server_exits_with_one_line(served, swept):
    uri, root, _, env = served
    assert swept[0] == 0
    args = ["report", "--tracking-uri", uri, "--experiment", "exit", "--headline", "spearman", "--out",
            str(root / "report")]
    code, _, err, took = run_to_exit(args, root, env, REPORT_DEADLINE_S)
    lines = err.strip().splitlines()
    print(f"\nmte report --headline spearman (MRPC) against {uri}: exit {code} after {took:.1f} s: {lines}")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: mrpc has no metric 'spearman'"), err


def group_left(pgid: int) -> list[str]:
    """What still runs in the process group a command led (Ray's processes stay in it, renamed or re-parented)."""
    left = []
    for p in psutil.process_iter(["pid", "name"]):
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(p.info["pid"]) == pgid:
                left.append(f"{p.info['pid']} {p.info['name']}")
    return left


def signalled_sweep(glue: Path, root: Path, sig: signal.Signals, when) -> tuple[int, list[str], float, list]:
    """A local sweep (sqlite tracking) sent `sig` to its whole process group once `when(proc)` holds: (exit code,
    its output lines, seconds from the signal to the exit, its runs)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    args = [sys.executable, "-m", "mte", "sweep", "--methods", "baseline", "--seeds", "2", "--train-limit", "96",
            "--eval-limit", "16", "--epochs", "3", "--max-length", "32", "--batch-size", "8", "--data-dir", str(glue),
            "--out", str(root / "store"), "--tracking-uri", uri, "--experiment", "signals", "--no-dashboard",
            "--no-report"]
    proc = subprocess.Popen(args, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=os.environ | {"COLUMNS": "200"})
    try:
        wait_for(lambda: when(proc), 300, f"the moment to send {sig.name}")
        os.killpg(proc.pid, sig)
        sent = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - sent
        time.sleep(3)
        left = group_left(proc.pid)
        assert not left, left
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("signals")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return proc.returncode, out.strip().splitlines(), took, runs


def training(proc: subprocess.Popen) -> bool:
    """A trial's worker has been fine-tuning for 3 s."""
    with contextlib.suppress(psutil.Error):
        return any("ImplicitFunc" in p.name() and time.time() - p.create_time() > 3
                   for p in psutil.Process(proc.pid).children(recursive=True))
    return False


def test_sigterm_to_a_sweeps_process_group_ends_it_promptly_with_its_parent_run_killed(generated_glue, tmp_path):
    code, lines, took, runs = signalled_sweep(generated_glue, tmp_path, signal.SIGTERM, training)
    statuses = sorted((r.data.tags["role"], r.info.status) for r in runs)
    print(f"\nSIGTERM to the process group mid-trial: exit {code} after {took:.1f} s; last line {lines[-1:]}; "
          f"runs {statuses}; nothing left in its process group")
    # 143 from the handler, or death by the SIGTERM itself (-15 here, 143 in a shell) when Ray died under it.
    assert code in (143, -signal.SIGTERM) and took < 40, lines
    assert lines[-1].startswith("terminated: finished work is kept") and not any("Traceback" in ln for ln in lines)
    assert ("sweep", "KILLED") in statuses and ("sweep", "RUNNING") not in statuses


def test_ctrl_c_in_a_sweeps_first_seconds_is_exit_130_and_one_line(generated_glue, tmp_path):
    started = time.monotonic()
    code, lines, took, runs = signalled_sweep(generated_glue, tmp_path, signal.SIGINT,
                                              lambda _: time.monotonic() - started > 3)
    print(f"\nCtrl-C (SIGINT to the process group) 3 s into a sweep: exit {code} after {took:.1f} s: {lines}")
    assert code == 130 and took < 30 and lines[-1].startswith("interrupted: finished work is kept"), lines
    assert not any("Traceback" in ln for ln in lines)
    assert all(r.info.status != "RUNNING" for r in runs)


SWALLOWED = '''
import os, signal, weakref
from mte.cli import interrupts
interrupts.record()
class Held: pass
held = Held()
def on_collect(_):  # a SIGINT arriving inside a callback: Python prints "Exception ignored" and carries on
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000): pass
ref = weakref.ref(held, on_collect)
del held
print("carried on", flush=True)
try:
    interrupts.check()
except KeyboardInterrupt:
    print("stopped at the check")
'''


def test_a_ctrl_c_whose_keyboard_interrupt_python_swallows_still_stops_the_command():
    """What made a sweep interrupted in its first seconds run on: a KeyboardInterrupt raised inside a callback (an
    import lock's, while a module loads) is swallowed. The SIGINT is recorded too, and the command stops at its
    next check (before a sweep's or a τ search's work starts)."""
    out = subprocess.run([sys.executable, "-c", SWALLOWED], capture_output=True, text=True, timeout=60)
    assert "Exception ignored" in out.stderr and "KeyboardInterrupt" in out.stderr  # the swallowing happened
    assert out.stdout.split("\n")[:2] == ["carried on", "stopped at the check"], out.stdout + out.stderr
