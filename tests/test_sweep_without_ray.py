"""A sweep on a machine without Ray (`mte sweep --executor local`, Ray made unimportable in every process), its
store recorded into another MLflow store (`mte import`), and the report made from either."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from mte.cli import app, main

TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "16",
        "--rounds", "1"]
BLOCK_RAY = '''import sys


class _NoRay:
    """Ray is not installed here, as far as any process of the test knows."""

    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"no ray on this machine ({name})")
        return None


sys.meta_path.insert(0, _NoRay())
'''


@dataclass
class Box:
    root: Path
    store: Path
    glue: Path
    env: dict[str, str]
    uri: str
    first: subprocess.CompletedProcess

    def mte(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mte", *args], env=self.env, cwd=self.root, text=True,
                              capture_output=True, timeout=timeout)

    def sweep(self, *args: str) -> subprocess.CompletedProcess:
        return self.mte("sweep", "--executor", "local", "--methods", "baseline,active-lt", "--seeds", "2", *TINY,
                        "--data-dir", str(self.glue), "--out", str(self.store), "--tracking-uri", self.uri,
                        "--experiment", "box", "--max-concurrent", "2", "--no-report", *args)


@pytest.fixture(scope="module")
def box(glue_dir, tmp_path_factory) -> Box:
    root = tmp_path_factory.mktemp("box")
    (root / "noray").mkdir()
    (root / "noray" / "sitecustomize.py").write_text(BLOCK_RAY)
    env = os.environ | {"PYTHONPATH": str(root / "noray"), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    b = Box(root, root / "store", glue_dir, env, f"sqlite:///{root / 'box.db'}", None)  # type: ignore[arg-type]
    b.first = b.sweep()
    return b


def test_ray_is_unimportable_in_the_box(box):
    """What makes the other tests mean something: `import ray` fails in a process with the box's environment."""
    out = subprocess.run([sys.executable, "-c", "import ray"], env=box.env, capture_output=True, text=True)
    assert out.returncode != 0 and "no ray on this machine" in out.stderr


def test_local_sweep_records_every_seed_without_ray(box):
    assert box.first.returncode == 0, box.first.stdout + box.first.stderr
    assert "4 trials: 0 already recorded, 4 to run" in box.first.stderr
    client = MlflowClient(box.uri)
    exp = client.get_experiment_by_name("box")
    (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'sweep'")
    assert parent.info.status == "FINISHED"
    trials = client.search_runs([exp.experiment_id], "tags.role = 'trial'")
    assert sorted((r.data.tags["method"], r.data.tags["seed"]) for r in trials) == [
        ("active-lt", "0"), ("active-lt", "1"), ("baseline", "0"), ("baseline", "1")]
    for r in trials:
        assert r.info.status == "FINISHED" and r.data.tags["executor"] == "local"
        assert r.data.tags["node.id"].startswith("local-worker-")
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert "dev_accuracy" in r.data.metrics and r.data.params["seed"] == r.data.tags["seed"]
    assert len(list((box.store / "runs").iterdir())) == 4


def test_rerun_resumes_and_a_failing_trial_is_retried_then_reported(box):
    """A rerun with one more seed runs only that seed; its trial raises every time (a test hook): retried
    --max-failures times, named, the parent run FAILED, the exit code 1, and everything else kept."""
    env = box.env | {"MTE_TEST_CRASH": "raise:baseline:2"}
    failing = subprocess.run(
        [sys.executable, "-m", "mte", "sweep", "--executor", "local", "--methods", "baseline", "--seeds", "3", *TINY,
         "--data-dir", str(box.glue), "--out", str(box.store), "--tracking-uri", box.uri, "--experiment", "box",
         "--max-failures", "1", "--no-report"], env=env, cwd=box.root, text=True, capture_output=True, timeout=300)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "3 trials: 2 already recorded, 1 to run" in failing.stderr
    assert "retry   baseline-s2" in failing.stderr and "failed  baseline-s2" in failing.stderr
    assert "injected failure" in failing.stderr
    client = MlflowClient(box.uri)
    exp = client.get_experiment_by_name("box")
    (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'sweep'")
    assert parent.info.status == "FAILED"
    done = {(r.data.tags["method"], r.data.tags["seed"]) for r in
            client.search_runs([exp.experiment_id], "tags.role = 'trial'") if r.info.status == "FINISHED"}
    assert done == {("baseline", "0"), ("baseline", "1"), ("active-lt", "0"), ("active-lt", "1")}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def imported(box) -> dict:
    """The box's store imported twice into a fresh tracking store."""
    uri = f"sqlite:///{box.root / 'imported.db'}"
    first = invoke("import", "--store", str(box.store), "--experiment", "imported", "--tracking-uri", uri)
    second = invoke("import", "--store", str(box.store), "--experiment", "imported", "--tracking-uri", uri)
    return {"uri": uri, "first": first, "second": second}


def _trials(uri: str, experiment: str) -> dict[str, Any]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.role = 'trial' and attributes.status = 'FINISHED'")
    return {r.data.tags["hash"]: r for r in runs}


def test_import_records_the_store_as_the_sweep_recorded_it(box, imported):
    assert imported["first"].exit_code == 0, imported["first"].output + repr(imported["first"].exception)
    assert "imported 4 seed result(s)" in imported["first"].output
    swept, mine = _trials(box.uri, "box"), _trials(imported["uri"], "imported")
    assert set(mine) == set(swept) and len(mine) == 4
    client, theirs = MlflowClient(imported["uri"]), MlflowClient(box.uri)
    where = ("node.host", "node.id", "node.resources", "executor", "imported_from", "mlflow.source.name",
             "mlflow.runName", "mlflow.user", "mlflow.source.type", "mlflow.source.git.commit")
    for h, run in mine.items():
        ref = swept[h]
        assert run.data.params == ref.data.params
        timing = ("elapsed_s", "log_s")  # the time of the call that produced or loaded the result
        assert {k: v for k, v in run.data.metrics.items() if k not in timing} == pytest.approx(
            {k: v for k, v in ref.data.metrics.items() if k not in timing}, rel=1e-9)
        ref_tags = {k: v for k, v in ref.data.tags.items()  # less where and by whom (version.*) it was recorded
                    if k not in where and k != "mlflow.parentRunId" and not k.startswith("version.")}
        assert {k: run.data.tags.get(k) for k in ref_tags} == ref_tags
        assert run.data.tags["imported_from"] == str(box.store.resolve())
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == sorted(
            a.path for a in theirs.list_artifacts(ref.info.run_id))
    (parent,) = client.search_runs([client.get_experiment_by_name("imported").experiment_id], "tags.role = 'sweep'")
    (ref_parent,) = theirs.search_runs([theirs.get_experiment_by_name("box").experiment_id], "tags.role = 'sweep'")
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep"] == ref_parent.data.tags["sweep"]
    assert {k: v for k, v in parent.data.params.items()} == ref_parent.data.params


def test_a_second_import_adds_nothing(imported):
    assert imported["second"].exit_code == 0, imported["second"].output
    assert "imported 0 seed result(s)" in imported["second"].output and "4 were recorded already" in \
        imported["second"].output
    client = MlflowClient(imported["uri"])
    exp = client.get_experiment_by_name("imported")
    assert len(client.search_runs([exp.experiment_id], "")) == 5  # one parent, four seeds


def test_report_from_the_store_without_mlflow_equals_the_report_from_mlflow(box, imported):
    """`mte report --store` in a process where neither Ray nor MLflow imports; Table 1 as `mte report` makes it
    from the imported experiment."""
    tracked = invoke("report", "--experiment", "imported", "--tracking-uri", imported["uri"], "--out",
                     str(box.root / "from-mlflow"))
    assert tracked.exit_code == 0, tracked.output + repr(tracked.exception)
    (box.root / "nomlflow").mkdir(exist_ok=True)
    (box.root / "nomlflow" / "sitecustomize.py").write_text(
        BLOCK_RAY.replace('name == "ray" or name.startswith("ray.")', 'name.split(".")[0] in ("ray", "mlflow")'))
    env = box.env | {"PYTHONPATH": str(box.root / "nomlflow")}
    blocked = subprocess.run([sys.executable, "-c", "import mlflow"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0  # the check below can fail
    out = subprocess.run([sys.executable, "-m", "mte", "report", "--store", str(box.store), "--out",
                          str(box.root / "from-store")], env=env, cwd=box.root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "4 runs from the store" in out.stderr

    def table(folder: str) -> list[dict[str, str]]:
        with open(box.root / folder / "table1_ensembles.csv") as f:
            return list(csv.DictReader(f))

    store_rows, mlflow_rows = table("from-store"), table("from-mlflow")
    assert len(store_rows) == 2 and [r.keys() for r in store_rows] == [r.keys() for r in mlflow_rows]
    for a, b in zip(store_rows, mlflow_rows, strict=True):
        for k in a:
            try:
                assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-9, abs=1e-12), k
            except ValueError:
                assert a[k] == b[k], k


def test_bad_store_is_one_line_and_records_nothing(tmp_path, capsys):
    def error(*args: str) -> str:
        with pytest.raises(SystemExit) as e:
            main(list(args))
        assert e.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert "no such folder" in error("import", "--store", str(tmp_path / "missing"), "--experiment", "x",
                                     "--tracking-uri", uri)
    assert not (tmp_path / "none.db").exists() or MlflowClient(uri).get_experiment_by_name("x") is None
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    assert "holds no finished seed" in error("report", "--store", str(tmp_path / "empty"), "--out",
                                             str(tmp_path / "r"))
