"""Bad input, caught before anything starts: exit 2, one line on stderr, nothing recorded (no tracking database
where there was none, no result stored). Every case is a real `python -m mte` process; they run side by side."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_bad_inputs
from servers import free_port

TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "16"]


def write_damaged_inputs(root: Path, glue: Path) -> Path:
    """Inputs that look fine until a trial uses them, under `root`: model folders (weights cut short, pickle
    weights only, a config.json that does not describe the weights beside it: a vocabulary of 10^12, or nothing but
    a model type), data folders whose train.tsv is a folder or a symbolic link loop, Ray token files (empty, and
    readable by all) and a tracking store whose recorded sweep names the pickle-only model."""
    from mte.models import resolve_model_path

    real = Path(resolve_model_path("minilm"))
    for name in ("truncated", "pickle-only", "vocab-1e12", "bare-config"):
        folder = root / name
        folder.mkdir(parents=True)
        for f in real.iterdir():
            if f.is_file() and f.name != "model.safetensors":
                (folder / f.name).symlink_to(f)
    (root / "truncated" / "model.safetensors").write_bytes((real / "model.safetensors").read_bytes()[:100_000])
    (root / "pickle-only" / "pytorch_model.bin").write_bytes(b"\x80\x04N.")  # a pickle (of None)
    for name, config in (("vocab-1e12", json.loads((real / "config.json").read_text()) | {"vocab_size": 10**12}),
                         ("bare-config", {"model_type": "bert"})):
        (root / name / "config.json").unlink()
        (root / name / "config.json").write_text(json.dumps(config))
        (root / name / "model.safetensors").symlink_to(real / "model.safetensors")
    for name in ("train-a-folder", "train-a-loop"):
        (root / name / "MRPC").mkdir(parents=True)
        (root / name / "MRPC" / "dev.tsv").symlink_to(glue / "MRPC" / "dev.tsv")
    (root / "train-a-folder" / "MRPC" / "train.tsv").mkdir()
    (root / "train-a-loop" / "MRPC" / "train.tsv").symlink_to("train.tsv")
    for name, text, mode in (("token-empty", "", 0o600), ("token-open", "0" * 64, 0o666)):
        (root / name / "mte").mkdir(parents=True)
        (root / name / "mte" / "ray_auth_token").write_text(text)
        (root / name / "mte" / "ray_auth_token").chmod(mode)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'pickle.db'}")
    exp = client.create_experiment("mte", artifact_location=(root / "pickle-art").as_uri())
    config = {"spec": {"model": {"model": str(root / "pickle-only")}, "data": {"train_limit": 16}},
              "methods": ["baseline"], "seeds": 1, "paths": {"data_dir": str(glue), "store": str(root / "store")}}
    client.create_run(exp, run_name="sweep-pickle", tags={"role": "sweep", "sweep": "1" * 16,
                                                          "sweep_config": json.dumps(config)})
    return root


@contextlib.contextmanager
def read_only_folder(root: Path) -> Iterator[Path]:
    """A folder no process can write into, root included: a read-only tmpfs where this process may mount one
    (permission bits do not stop root), else /proc, which takes no new files."""
    folder = root / "read-only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0 if shutil.which("mount") else False
    try:
        yield folder if mounted else Path("/proc")
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory, generated_glue):
    """Files the cases point at: a folder that is not a model, a file that is not a mask, a TSV missing a column,
    a tracking store whose recorded sweep was edited to write elsewhere."""
    root = tmp_path_factory.mktemp("bad")
    write_bad_inputs(root)
    write_damaged_inputs(root, generated_glue)
    (root / "report-out-file").write_text("x")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'edited.db'}")
    exp = client.create_experiment("mte", artifact_location=(root / "art").as_uri())
    config = {"spec": {}, "methods": ["baseline"], "seeds": 1,
              "paths": {"data_dir": str(generated_glue), "store": str(root / "not-a-model")}}
    client.create_run(exp, run_name="sweep-edited", tags={"role": "sweep", "sweep": "0" * 16,
                                                          "sweep_config": json.dumps(config)})
    return root


def damaged_cases(world: Path, glue: Path, read_only: Path) -> dict[str, tuple]:
    """Input that a trial would fail on, or a library would meet with a traceback, and what looks fine but is
    not meant (name → arguments, what the one line says[, environment])."""
    data = ["--data-dir", str(glue)]
    sweep = ["sweep", "--seeds", "1"]
    return {
        "holdout 0.99": ([*sweep, "--holdout", "0.99", *data], "leaves 0 to train on and 16 to evaluate on"),
        "bagging fraction 0.01": ([*sweep, "--methods", "bagging", "--bagging-fraction", "0.01", *data],
                                  "gives each BAGGING member 0"),
        "tune-tau holdout 0.99": (["tune-tau", "--method", "random-lt", "--holdout-fraction", "0.99", *data],
                                  "--holdout-fraction 0.99 of 96 training examples leaves 1 to train on"),
        "dry run holdout 0.99": ([*sweep, "--dry-run", "--holdout", "0.99", *data], "leaves 0 to train on"),
        "model weights cut short": ([*sweep, "--model", str(world / "truncated"), *data],
                                    "model.safetensors is damaged or incomplete"),
        "model pickle only": (["run", "--model", str(world / "pickle-only"), *data], "has only pickle weights"),
        "resume a pickle-only model": (["sweep", "--resume", "--tracking-uri", f"sqlite:///{world}/pickle.db"],
                                       "has only pickle weights (pytorch_model.bin)"),
        "vocab_size 1e12": ([*sweep, "--model", str(world / "vocab-1e12"), *data],
                            "config.json says vocab_size 1000000000000, but its weights' word embeddings are"),
        "config of a model type only": (["run", "--model", str(world / "bare-config"), *data],
                                        "config.json leaves hidden_size out (the bert default: 768)"),
        "max-length past the positions": ([*sweep, "--max-length", "2000", *data],
                                          "its max_position_embeddings is 512"),
        "report dir a file": ([*sweep, "--report-dir", str(world / "report-out-file"), *data],
                              "is a file; it must name a folder"),
        "dashboard host not a host": ([*sweep, "--dashboard-host", "not a host", *data],
                                      "is not an IP address or a host name that resolves"),
        "dashboard host of another machine": ([*sweep, "--dashboard-host", "192.0.2.1", *data],
                                              "--dashboard-host 192.0.2.1: cannot listen there"),
        "experiment of 10000 characters": ([*sweep, "--experiment", "x" * 10_000, *data],
                                           "--experiment is 10000 characters long"),
        "seed past 32 bits": (["run", "--seed", "99999999999999999999999", *data], "--seed must be at most"),
        "train.tsv a folder": (["run", "--data-dir", str(world / "train-a-folder")], "is a folder, not a TSV file"),
        "train.tsv a symlink loop": ([*sweep, "--data-dir", str(world / "train-a-loop")],
                                     "train.tsv is a symbolic link loop"),
        "run --out read-only": (["run", "--out", str(read_only / "store"), *data], "cannot write in"),
        "sweep --out read-only": ([*sweep, "--out", str(read_only / "store"), *data], "cannot write in"),
        "tracking port 99999": ([*sweep, "--tracking-uri", "http://127.0.0.1:99999", *data],
                                "the port must be a number in 1..65535"),
        "ray token file empty": ([*sweep, *data], "ray_auth_token is empty",
                                 {"XDG_CONFIG_HOME": str(world / "token-empty")}),
        "ray token file open to all": ([*sweep, *data], "(mode 0666); run `chmod 600 ",
                                       {"XDG_CONFIG_HOME": str(world / "token-open")}),
        "tau and tau from tuning": ([*sweep, "--tau", "0.001", "--tau-from-tuning", "mrpc", *data],
                                    "--tau and --tau-from-tuning both set τ"),
        "tau from a tuning not recorded": ([*sweep, "--methods", "random-lt", "--tau-from-tuning", "mrpc", *data],
                                           "no finished `mte tune-tau` for task mrpc, model minilm, method random-lt"),
        "resume with a preset": (["sweep", "--resume", "--preset", "quick", "--tracking-uri",
                                  f"sqlite:///{world}/edited.db"], "drop --preset"),
        "methods all and more": ([*sweep, "--methods", "baseline,all", *data], "'all' cannot be combined"),
    }


def cases(world: Path, glue: Path, read_only: Path) -> tuple[dict[str, tuple], int]:
    """name → (arguments, what the one line says[, environment]); and a port the test keeps busy."""
    busy = free_port()
    data = ["--data-dir", str(glue)]
    return damaged_cases(world, glue, read_only) | {
        "tau inf": (["run", "--method", "random-lt", "--tau", "inf", *data], "--tau must be a finite number, got inf"),
        "lr inf": (["run", "--lr", "inf", *data], "--lr must be a finite number, got inf"),
        "dropout nan": (["run", "--dropout", "nan", *data], "--dropout must be a finite number, got nan"),
        "dropout 1.5": (["run", "--dropout", "1.5", *data], "dropout must be in [0, 1), got 1.5"),
        "max-length -1": (["run", "--max-length", "-1", *data], "max-length must be >= 8 ("),
        "max-length 0": (["run", "--max-length", "0", *data], "max-length must be >= 8 ("),
        "model missing": (["run", "--model", "/nonexistent/model", *data],
                          "model path /nonexistent/model does not exist"),
        "model not a model": (["run", "--model", str(world / "not-a-model"), *data], "has no config.json"),
        "prior mask not a mask": (["run", "--method", "active-lt", "--seed", "1", "--prior-mask",
                                   str(world / "not-a-mask.safetensors"), *data], "cannot read mask"),
        "sweep model missing": (["sweep", "--model", "/nonexistent/model", "--seeds", "1", *data],
                                "model path /nonexistent/model does not exist"),
        "tune-tau TSV without a column": (["tune-tau", "--method", "random-lt", "--data-dir", str(world / "broken")],
                                          "header has no column 'Quality'"),
        "tracking db under a file": (["sweep", "--seeds", "1", "--tracking-uri", f"sqlite:///{world}/a-file/m.db",
                                      *data], "is not a folder"),
        "tracking foo://bar": (["sweep", "--seeds", "1", "--tracking-uri", "foo://bar", *data],
                               "unknown scheme 'foo'"),
        "tracking a bare folder": (["sweep", "--seeds", "1", "--tracking-uri", str(world), *data],
                                   "is a path, not a URI"),
        "ray address unreachable": (["sweep", "--seeds", "1", "--ray-address", f"127.0.0.1:{free_port()}",
                                     "--tracking-uri", f"http://127.0.0.1:{free_port()}", *data],
                                    "nothing answers at 127.0.0.1"),
        "cluster with a sqlite store": (["sweep", "--seeds", "1", "--ray-address", f"127.0.0.1:{free_port()}", *data],
                                        "--ray-address needs an MLflow tracking server"),
        "ui port 70000": (["ui", "--tracking-uri", f"sqlite:///{world}/edited.db", "--port", "70000"],
                          "--port must be in 1..65535, got 70000"),
        "ui busy port": (["ui", "--tracking-uri", f"sqlite:///{world}/edited.db", "--port", str(busy)],
                         f"cannot serve the UI on 127.0.0.1:{busy}"),
        "report unknown run id": (["report", "--tracking-uri", f"sqlite:///{world}/edited.db", "--run-id",
                                   "0123456789abcdef0123456789abcdef"], "no run '0123456789abcdef0123456789abcdef'"),
        "report --out a file": (["report", "--tracking-uri", f"sqlite:///{world}/edited.db", "--out",
                                 str(world / "report-out-file")], "is a file; the report needs a folder"),
        "report without a database": (["report"], "no tracking database at"),
        "resume without a database": (["sweep", "--resume"], "no tracking database at"),
        "resume into an edited store": (["sweep", "--resume", "--tracking-uri", f"sqlite:///{world}/edited.db"],
                                        "is not an mte result store"),
    }, busy


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    with read_only_folder(tmp_path_factory.mktemp("ro")) as folder:
        yield folder


def test_bad_input_is_one_line_exit_2_and_records_nothing(world, generated_glue, read_only, tmp_path):
    table, busy = cases(world, generated_glue, read_only)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", busy))
    blocker.listen()
    procs = {}
    for i, (name, (args, _, *env)) in enumerate(table.items()):
        cwd = tmp_path / f"case{i}"
        cwd.mkdir()
        if args[0] in ("run", "sweep") and "--resume" not in args:
            args = [args[0], *TINY, *args[1:]]  # the case's own options come last, and win
        procs[name] = (cwd, subprocess.Popen([sys.executable, "-m", "mte", *args], cwd=cwd, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True,
                                             env=os.environ | {"COLUMNS": "300", **(env[0] if env else {})}))
        if len(procs) % 4 == 0:  # a few at a time: each loads torch
            for _, p in list(procs.values())[-4:]:
                p.wait(timeout=300)
    print()
    wrong = []
    try:
        for name, (cwd, proc) in procs.items():
            _, err = proc.communicate(timeout=300)
            lines = [ln for ln in err.strip().splitlines() if not ln.startswith("--resume: sweep ")]  # context
            left = [p.name for p in (cwd / "mlflow.db", cwd / "mte-store" / "runs") if p.exists()]
            print(f"{name:<30} exit {proc.returncode}  {lines[-1] if lines else ''}  left behind: {left or 'nothing'}")
            if proc.returncode != 2 or len(lines) != 1 or not lines[0].startswith("error:") \
                    or table[name][1] not in lines[0] or left:
                wrong.append((name, proc.returncode, err))
    finally:
        blocker.close()
    assert not wrong, wrong
    assert not (world / "not-a-model" / "runs").exists()  # the edited store path was refused, not written to


def test_experiment_names_cannot_leave_the_artifact_folder(tmp_path):
    from tracking.uri import default_artifact_location

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    root = (tmp_path / "mlartifacts").resolve()
    for name in ("..", "../../etc", "/abs/path", ".hidden", "a/../../b", "ok name"):
        location = Path(default_artifact_location(db, name).removeprefix("file://"))
        assert location.parent == root and location.name not in ("", ".", ".."), name
