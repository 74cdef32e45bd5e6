"""Bad input, caught before anything starts: exit 2, one line on stderr, nothing recorded (no tracking database
where there was none, no result stored). Every case is a real `python -m mte` process; they run side by side."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_bad_inputs
from servers import free_port

TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "16"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, generated_glue):
    """Files the cases point at: a folder that is not a model, a file that is not a mask, a TSV missing a column,
    a tracking store whose recorded sweep was edited to write elsewhere."""
    root = tmp_path_factory.mktemp("bad")
    write_bad_inputs(root)
    (root / "report-out-file").write_text("x")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'edited.db'}")
    exp = client.create_experiment("mte", artifact_location=(root / "art").as_uri())
    config = {"spec": {}, "methods": ["baseline"], "seeds": 1,
              "paths": {"data_dir": str(generated_glue), "store": str(root / "not-a-model")}}
    client.create_run(exp, run_name="sweep-edited", tags={"role": "sweep", "sweep": "0" * 16,
                                                          "sweep_config": json.dumps(config)})
    return root


def cases(world: Path, glue: Path) -> dict[str, tuple[list[str], str]]:
    busy = free_port()
    data = ["--data-dir", str(glue)]
    return {
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


def test_bad_input_is_one_line_exit_2_and_records_nothing(world, generated_glue, tmp_path):
    table, busy = cases(world, generated_glue)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", busy))
    blocker.listen()
    procs = {}
    for i, (name, (args, _)) in enumerate(table.items()):
        cwd = tmp_path / f"case{i}"
        cwd.mkdir()
        if args[0] in ("run", "sweep") and "--resume" not in args:
            args = [args[0], *TINY, *args[1:]]  # the case's own options come last, and win
        procs[name] = (cwd, subprocess.Popen([sys.executable, "-m", "mte", *args], cwd=cwd, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True, env=os.environ | {"COLUMNS": "300"}))
        if len(procs) % 4 == 0:  # a few at a time: each loads torch
            for _, p in list(procs.values())[-4:]:
                p.wait(timeout=300)
    print()
    wrong = []
    try:
        for name, (cwd, proc) in procs.items():
            _, err = proc.communicate(timeout=300)
            lines = err.strip().splitlines()
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
