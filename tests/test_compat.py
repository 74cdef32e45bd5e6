"""Results stay where older code put them: every built-in method's result keys, store layout and MLflow records as
commit f8671ec wrote them (tests/fixtures/compat_f8671ec, made by tests/fixtures/make_compat_store.py).

Real `python -m mte` processes, each to its exit. Units whose keys depend on training numerics are compared by
layout only: the fine-tunes under a pruned mask (the mask's digest is in their key) and every unit of an ACTIVE-LT
seed > 0 (the earlier seeds' mask digests are in its key). Masks may differ by a few weights across CPUs (AMD vs
Intel), so those keys may too; every other key is compared exactly, numbers (logits, metrics) not at all, except
where a sweep records a stored result again (the store alone resumes), which must record it as it was.

MTE_COMPAT_CODE=<checkout> runs that checkout's code instead of this one's (e.g. to see the test fail).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import write_mrpc

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "compat_f8671ec"
META = json.loads((FIXTURE / "fixture.json").read_text())
CODE = os.environ.get("MTE_COMPAT_CODE")
UNITS = META["units"]
HEX = re.compile(r"[0-9a-f]{16}")
pytestmark = pytest.mark.slow

# MLflow tags that say when, where, by whom or with which versions a run was recorded, not what it holds.
VOLATILE_TAGS = {"mlflow.user", "mlflow.source.git.commit", "mlflow.parentRunId", "node.host", "node.id", "driver",
                 "ran_on"}
TIMINGS = {"elapsed_s", "log_s"}  # metrics of the call that recorded a result
# result.json / finetune.json: not compared (timings, where it ran, which trial got to a shared fine-tune first);
# compared by structure only (training numerics).
SKIP_FIELDS = {"wall_s", "reused", "ran_on"}
NUMERIC_FIELDS = {"metrics", "epochs", "loss_trace"}


# --- the fixture, unpacked, and the sweep --------------------------------------------------------------------

def write_data(root: Path) -> None:
    """The fixture's data under <root>/glue, generated again (nothing GLUE-shaped is committed) and checked byte for
    byte against the sha256 the fixture recorded: its data fingerprint is part of every key."""
    write_mrpc(root / "glue", **META["data"]["sizes"])
    for split, want in META["data"]["sha256"].items():
        got = hashlib.sha256((root / "glue" / "MRPC" / f"{split}.tsv").read_bytes()).hexdigest()
        assert got == want, (f"tests/conftest.py: write_mrpc no longer writes the fixture's {split}.tsv ({got[:12]} "
                             f"vs {want[:12]}): every key of the fixture would change")


def unpack(dest: Path) -> Path:
    """The fixture's store, database and data under `dest`, its recorded absolute paths rewritten to `dest`."""
    dest.mkdir(parents=True)
    dest = dest.resolve()
    write_data(dest)
    with tarfile.open(FIXTURE / "store.tar.xz") as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse anything outside dest
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)  # our own fixture
    con = sqlite3.connect(dest / "mlflow.db")
    with con:
        for column in META["paths_in"]:
            table, col = column.split(".")
            con.execute(f'update "{table}" set "{col}" = replace("{col}", ?, ?)', (META["root"], str(dest)))
    con.close()
    return dest


def mte(root: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    if CODE:
        env["PYTHONPATH"] = CODE
    return subprocess.run([sys.executable, "-m", "mte", *args], cwd=root, env=env, text=True, capture_output=True,
                          timeout=timeout)


def sweep(root: Path) -> subprocess.CompletedProcess:
    """The fixture's sweep, with the same options, in `root`."""
    return mte(root, *(a.format(root=root) for a in META["args"]))


def said(out: subprocess.CompletedProcess) -> str:
    return f"exit {out.returncode}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-6000:]}"


# --- the store -----------------------------------------------------------------------------------------------

def store_units(store: Path) -> dict[tuple[str, int], tuple[str, dict]]:
    """(method, seed) → (run key, result.json) of every seed result in the store."""
    out = {}
    for folder in sorted((store / "runs").iterdir()):
        result = json.loads((folder / "result.json").read_text())
        try:
            unit = (result["spec"]["method"]["method"], result["spec"]["seed"])
        except (KeyError, TypeError):
            raise AssertionError(f"runs/{folder.name}/result.json has no spec.method.method or spec.seed: "
                                 f"{json.dumps(result.get('spec'))[:300]}") from None
        assert unit not in out, f"two results of {name(unit)}: {out[unit][0]} and {folder.name}"
        out[unit] = (folder.name, result)
    return out


def name(unit: tuple[str, int]) -> str:
    return f"{unit[0]} seed {unit[1]}"


def chained(unit: tuple[str, int]) -> bool:
    """An ACTIVE-LT seed after the first: its key covers earlier seeds' masks (training numerics)."""
    return unit[0] == "active-lt" and unit[1] > 0


def roles(units: dict) -> dict[str, list[tuple[str, bool]]]:
    """Fine-tune key → every (unit round, whether its key is free of training numerics) it serves."""
    out: dict[str, list[tuple[str, bool]]] = {}
    for unit, (_, result) in units.items():
        for i, record in enumerate(result["rounds"]):
            out.setdefault(record["key"], []).append(
                (f"{name(unit)} round {i}", not chained(unit) and record["sparsity"] == 0))
    return out


def labels(units: dict) -> dict[str, str]:
    """Key → itself where training numerics do not enter it, else a label naming what it holds."""
    out = {key: key if not chained(unit) else f"<run of {name(unit)}>" for unit, (key, _) in units.items()}
    for key, served in roles(units).items():
        out[key] = key if all(free for _, free in served) else \
            "<fine-tune of " + ", ".join(sorted(n for n, _ in served)) + ">"
    return out


def structure(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: structure(v) for k, v in x.items()}
    if isinstance(x, list):
        return [structure(v) for v in x]
    return "<number>" if isinstance(x, int | float) and not isinstance(x, bool) else x


def record_view(x: Any, keys: dict[str, str], field: str | None = None) -> Any:
    """result.json / finetune.json with keys labelled, numerics reduced to their structure, timings dropped."""
    if isinstance(x, dict):
        return {k: "<not compared>" if k in SKIP_FIELDS else structure(v) if k in NUMERIC_FIELDS
                else record_view(v, keys, k) for k, v in x.items()}
    if isinstance(x, list):
        return [record_view(v, keys, field) for v in x]
    if field == "key":
        return keys.get(x, x)
    if field == "prior_masks":
        return "<a mask digest>"
    return x


def file_view(path: Path, keys: dict[str, str]) -> Any:
    """What a store file's format says, not the numbers in it."""
    if path.name == "MANIFEST.json":
        return sorted(json.loads(path.read_text())["files"])
    if path.suffix == ".json":
        return record_view(json.loads(path.read_text()), keys)
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        return {"dtype": str(array.dtype), "shape": array.shape} | (
            {"values": array.tolist()} if path.name == "dev_labels.npy" else {})
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            meta = dict(f.metadata() or {})
            if "shapes" in meta:
                meta["shapes"] = json.loads(meta["shapes"])
            tensors = {}
            for k in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                t = f.get_tensor(k)
                tensors[k] = (str(t.dtype), t.shape) + ((hashlib.sha256(t.tobytes()).hexdigest(),)
                                                          if path.parts[-3] == "data" else ())
        return {"metadata": meta, "tensors": tensors}
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(store: Path, keys: dict[str, str]) -> dict[str, Path]:
    """Every file of the store's entries (locks aside), keys in its path labelled."""
    return {HEX.sub(lambda m: keys.get(m.group(), m.group()), str(p.relative_to(store))): p
            for p in sorted(store.rglob("*")) if p.is_file() and p.relative_to(store).parts[0] != ".locks"}


def entries(files: dict[str, Path]) -> dict[str, set[str]]:
    """Entry folder (e.g. 'runs/<key>') → its file names."""
    out: dict[str, set[str]] = {}
    for p in files:
        out.setdefault(str(Path(p).parent), set()).add(Path(p).name)
    return out


def digests(store: Path) -> dict[str, str]:
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file() and p.relative_to(store).parts[0] != ".locks"}


def compare_stores(ref: Path, new: Path) -> list[str]:
    """What changed between the reference store and a new one of the same sweep: keys, files, file formats."""
    problems = []
    ref_units, new_units = store_units(ref), store_units(new)
    for unit in sorted(ref_units.keys() - new_units.keys()):
        problems.append(f"{name(unit)}: no result in the new store (reference key {ref_units[unit][0]})")
    for unit in sorted(new_units.keys() - ref_units.keys()):
        problems.append(f"{name(unit)}: a result the reference store does not have ({new_units[unit][0]})")
    for unit in sorted(ref_units.keys() & new_units.keys()):
        (a, ra), (b, rb) = ref_units[unit], new_units[unit]
        if not chained(unit) and a != b:
            problems.append(f"{name(unit)}: run key changed: {a} -> {b}")
        if len(ra["rounds"]) != len(rb["rounds"]):
            problems.append(f"{name(unit)}: {len(ra['rounds'])} fine-tunes -> {len(rb['rounds'])}")
            continue
        for i, (x, y) in enumerate(zip(ra["rounds"], rb["rounds"], strict=True)):
            if not chained(unit) and x["sparsity"] == 0 and x["key"] != y["key"]:
                problems.append(f"{name(unit)} round {i}: fine-tune key changed: {x['key']} -> {y['key']}")
    ref_keys, new_keys = labels(ref_units), labels(new_units)
    ref_tree, new_tree = tree(ref, ref_keys), tree(new, new_keys)
    ref_entries, new_entries = entries(ref_tree), entries(new_tree)
    for kind, folders in (("gone", ref_entries.keys() - new_entries.keys()),
                          ("new", new_entries.keys() - ref_entries.keys())):
        for folder in sorted(folders):
            problems.append(f"store entry {kind}: {folder}/ "
                            f"({', '.join(sorted((ref_entries | new_entries)[folder]))})")
    both = {p for p in ref_tree.keys() | new_tree.keys() if str(Path(p).parent) in ref_entries.keys() & new_entries}
    problems += [f"store file gone: {p}" for p in sorted(both & ref_tree.keys() - new_tree.keys())]
    problems += [f"store file new: {p}" for p in sorted(both & new_tree.keys() - ref_tree.keys())]
    for p in sorted(ref_tree.keys() & new_tree.keys()):
        problems += [f"{p}: {d}" for d in diff(file_view(ref_tree[p], ref_keys), file_view(new_tree[p], new_keys))]
    return problems


def diff(a: Any, b: Any, at: str = "") -> list[str]:
    """Where two JSON-like values differ: 'field.sub[2]: old -> new', 'field gone', 'field new'."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(a.keys() | b.keys(), key=str):
            where = f"{at}.{k}" if at else str(k)
            if k not in b:
                out.append(f"{where} gone (was {short(a[k], 200)})")
            elif k not in a:
                out.append(f"{where} new ({short(b[k], 200)})")
            else:
                out += diff(a[k], b[k], where)
        return out
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in diff(x, y, f"{at}[{i}]")]
    return [] if a == b else [f"{at or 'value'}: {short(a, 300)} -> {short(b, 300)}"]


def as_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def short(x: Any, n: int = 1500) -> str:
    text = json.dumps(x, sort_keys=True, default=str) if not isinstance(x, str) else x
    return text if len(text) <= n else text[:n] + " ..."


# --- MLflow --------------------------------------------------------------------------------------------------

def artifacts(client: Any, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for a in client.list_artifacts(run_id, path):
        out += artifacts(client, run_id, a.path) if a.is_dir else [a.path]
    return sorted(out)


def mlflow_records(root: Path) -> dict[str, dict[str, Any]]:
    """Per run ('sweep', or '<method> seed <s>'): what MLflow holds of it, `root` written as '{root}'."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name(META["experiment"])
    assert exp is not None, f"no MLflow experiment {META['experiment']!r} in {root}/mlflow.db"

    def here(text: str) -> str:
        return text.replace(str(root), "{root}")

    out: dict[str, dict[str, Any]] = {"experiment": {"tags": exp.tags, "artifacts": here(exp.artifact_location)}}
    for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000):
        tags = run.data.tags
        role = "sweep" if tags.get("role") == "sweep" else f"{tags.get('method')} seed {tags.get('seed')}"
        assert role not in out, f"two MLflow runs of {role}: {out[role]['id']} and {run.info.run_id}"
        out[role] = {
            "id": run.info.run_id, "name": run.info.run_name, "status": run.info.status,
            "stage": run.info.lifecycle_stage, "parent": tags.get("mlflow.parentRunId"),
            "tags": {k: here(v) for k, v in tags.items()}, "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
            "steps": {k: sorted(m.step for m in client.get_metric_history(run.info.run_id, k))
                      for k in run.data.metrics},
            "inputs": sorted((d.dataset.name, d.dataset.digest, d.dataset.source_type, here(d.dataset.source),
                              tuple(sorted((t.key, t.value) for t in d.tags))) for d in run.inputs.dataset_inputs),
            "artifacts": artifacts(client, run.info.run_id),
        }
    return out


def compare_records(ref: dict[str, dict], new: dict[str, dict], exact: bool) -> list[str]:
    """What changed in MLflow. `exact`: the same stored results recorded again (every key, every metric value but
    timings, the reused tag); else a fresh sweep (keys that depend on training numerics, metric values and the
    reused tag, which says which trial got to a shared fine-tune first, are not compared)."""
    problems = []
    a_sweep, b_sweep = ref.get("sweep", {}).get("tags", {}), new.get("sweep", {}).get("tags", {})
    if a_sweep.get("sweep") != b_sweep.get("sweep"):
        problems.append(f"sweep hash (parent run tag 'sweep') changed: {a_sweep.get('sweep')} -> "
                        f"{b_sweep.get('sweep')}")
    problems += [f"MLflow run of {r} gone" for r in sorted(ref.keys() - new.keys())]
    problems += [f"MLflow run of {r} new" for r in sorted(new.keys() - ref.keys())]
    problems += [f"experiment: {d}" for d in diff(ref.get("experiment"), new.get("experiment"))]
    for role in sorted(ref.keys() & new.keys() - {"experiment"}):
        a, b = ref[role], new[role]
        for what in ("name", "status", "stage", "inputs", "artifacts", "steps"):
            problems += [f"{role}: {what}: {d}" for d in diff(a[what], b[what])]
        if role != "sweep" and b["parent"] != new["sweep"]["id"]:
            problems.append(f"{role}: its parent run is {b['parent']}, not the sweep's run {new['sweep']['id']}")
        numeric_key = role.startswith("active-lt") and not role.endswith(" seed 0")
        skip = set() if exact else {"reused"} | ({"result_key"} if numeric_key else set())
        for kind in ("tags", "params"):
            x, y = a[kind], b[kind]
            for k in sorted(x.keys() | y.keys()):
                if k in VOLATILE_TAGS or k.startswith("version.") or k in skip or x.get(k) == y.get(k):
                    continue
                label = {"hash": "unit hash (MLflow tag 'hash')", "result_key": "run key (MLflow tag 'result_key')"}
                what = label.get(k, f"{kind[:-1]} {k!r}") if kind == "tags" else f"param {k!r}"
                old, now = as_json(x.get(k, "null")), as_json(y.get(k, "null"))
                if k in x and k in y and isinstance(old, dict) and isinstance(now, dict):
                    problems += [f"{role}: {what}: {d}" for d in diff(old, now)]
                else:
                    problems.append(f"{role}: {what} changed: {x.get(k, '<absent>')} -> {y.get(k, '<absent>')}")
        if exact:
            x = {k: v for k, v in a["metrics"].items() if k not in TIMINGS}
            y = {k: v for k, v in b["metrics"].items() if k not in TIMINGS}
            if x.keys() != y.keys() or any(not np.isclose(x[k], y[k], rtol=1e-9, atol=0) for k in x):
                problems.append(f"{role}: metric values changed: {short(x, 600)} -> {short(y, 600)}")
    return problems


def verdict(problems: list[str], what: str) -> str:
    return f"{what}: {len(problems)} difference(s) from the fixture made by {META['commit'][:7]}:\n  " + \
        "\n  ".join(problems)


# --- the runs ------------------------------------------------------------------------------------------------

@dataclass
class Resumed:
    root: Path
    before: dict[str, str]
    records: dict[str, dict]
    out: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return unpack(tmp_path_factory.mktemp("compat") / "pristine")


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> Resumed:
    """The same sweep again on a copy of the fixture (its store and its MLflow records)."""
    root = unpack(tmp_path_factory.mktemp("compat") / "resumed")
    before, records = digests(root / "store"), mlflow_records(root)
    return Resumed(root, before, records, sweep(root))


@pytest.fixture(scope="module")
def store_alone(tmp_path_factory) -> Resumed:
    """The same sweep on a copy of the fixture's store with an empty MLflow database: every unit is recorded
    anew from the store (ACTIVE-LT seed 1 found through seed 0's stored mask)."""
    root = unpack(tmp_path_factory.mktemp("compat") / "store-alone")
    (root / "mlflow.db").unlink()
    shutil.rmtree(root / "mlartifacts")
    return Resumed(root, digests(root / "store"), {}, sweep(root))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The same sweep into an empty store and database, on the fixture's data."""
    root = (tmp_path_factory.mktemp("compat") / "fresh").resolve()
    root.mkdir()
    write_data(root)
    return root, sweep(root)


def test_resume_finds_every_unit_recorded(resumed):
    out = resumed.out
    assert out.returncode == 0, said(out)
    assert f"{UNITS} trials: {UNITS} already recorded, 0 to run" in out.stderr, \
        "the rerun of the fixture's sweep did not find every unit recorded (a sweep or unit hash changed?)\n" + \
        said(out)
    after = digests(resumed.root / "store")
    changed = [f"new: {p}" for p in sorted(after.keys() - resumed.before.keys())] + \
        [f"gone: {p}" for p in sorted(resumed.before.keys() - after.keys())] + \
        [f"changed: {p}" for p in sorted(after.keys() & resumed.before.keys()) if after[p] != resumed.before[p]]
    assert not changed, verdict(changed, "the resumed sweep touched the store")
    problems = compare_records(resumed.records, mlflow_records(resumed.root), exact=True)
    assert not problems, verdict(problems, "the resumed sweep changed MLflow's records")


def test_the_store_alone_resumes_every_unit(store_alone, pristine):
    out = store_alone.out
    assert out.returncode == 0, said(out)
    assert f"{UNITS} trials: 0 already recorded, {UNITS} to run" in out.stderr, said(out)
    after = digests(store_alone.root / "store")
    changed = [f"new: {p}" for p in sorted(after.keys() - store_alone.before.keys())] + \
        [f"gone: {p}" for p in sorted(store_alone.before.keys() - after.keys())] + \
        [f"changed: {p}" for p in sorted(after.keys() & store_alone.before.keys())
         if after[p] != store_alone.before[p]]
    assert not changed, verdict(changed, "a sweep on the fixture's store trained or rewrote something (a key "
                                         "changed, or an entry no longer loads)") + "\n" + said(out)
    problems = compare_records(mlflow_records(pristine), mlflow_records(store_alone.root), exact=True)
    assert not problems, verdict(problems, "the fixture's store recorded again")


def test_a_fresh_sweep_keeps_keys_and_store_layout(fresh, pristine):
    root, out = fresh
    assert out.returncode == 0, said(out)
    problems = compare_stores(pristine / "store", root / "store")
    assert not problems, verdict(problems, "a fresh sweep's store")


def test_a_fresh_sweep_keeps_mlflow_records(fresh, pristine):
    root, out = fresh
    assert out.returncode == 0, said(out)
    problems = compare_records(mlflow_records(pristine), mlflow_records(root), exact=False)
    assert not problems, verdict(problems, "a fresh sweep's MLflow records")


@pytest.mark.parametrize("source", ["store", "mlflow"])
def test_the_report_reads_the_fixture(source, tmp_path):
    root = unpack(tmp_path / "fixture")
    where = ["--store", f"{root}/store"] if source == "store" else \
        ["--tracking-uri", f"sqlite:///{root}/mlflow.db", "--experiment", META["experiment"]]
    out = mte(root, "report", *where, "--out", f"{root}/report")
    assert out.returncode == 0, said(out)
    written = {p.name for p in (root / "report").iterdir()}
    assert set(META["report_files"][source]) <= written, \
        f"report files gone: {sorted(set(META['report_files'][source]) - written)}"
    sweep_hash = mlflow_records(root)["sweep"]["tags"]["sweep"][:8]  # the MLflow report names the parent run
    assert sweep_hash in (root / "report" / "report.md").read_text(), f"report.md does not name sweep {sweep_hash}"
    with open(root / "report" / "table1_ensembles.csv", newline="") as f:
        rows = {r["method"]: r["seeds"] for r in csv.DictReader(f)}
    assert rows == {m: "2" for m in ("baseline", "bagging", "base-lt", "active-lt", "random-lt")}, rows
