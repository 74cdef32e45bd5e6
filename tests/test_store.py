"""The result store heals: a damaged or incomplete entry is quarantined (not deleted) with a one-line warning and
recomputed; an entry without its manifest is damaged too; damaged MLflow artifacts are one line."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from mte.errors import MteError
from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from mte.lottery import run_seed
from mte.store import MANIFEST, Store, check_root, damage

SPEC = RunSpec(DataHparams(train_limit=16, eval_limit=8, max_length=32), ModelHparams(),
               TrainHparams(epochs=1, batch_size=16), MethodHparams("base-lt", rounds=1), seed=0)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, generated_glue):
    store = Store(tmp_path_factory.mktemp("pristine"))
    return store, run_seed(SPEC, store, generated_glue)


def copy(pristine, tmp_path) -> Store:
    store, _ = pristine
    shutil.copytree(store.root, tmp_path / "store")
    return Store(tmp_path / "store")


def truncate(path):
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


@pytest.mark.parametrize("name", ["mask.safetensors", "dev_logits.npy", "result.json"])
def test_a_truncated_seed_entry_is_quarantined_with_one_warning_and_recomputed(pristine, tmp_path, generated_glue,
                                                                             caplog, name):
    store = copy(pristine, tmp_path)
    key = pristine[1].key
    truncate(store.path("runs", key) / name)
    with caplog.at_level(logging.WARNING, logger="mte.store"):
        again = run_seed(SPEC, store, generated_glue)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert f"runs/{key} {name} does not match its checksum" in warning and "\n" not in warning
    assert not again.loaded and again.key == key
    np.testing.assert_array_equal(again.dev_logits, pristine[1].dev_logits)  # recomputed from reused fine-tunes
    assert all(r.reused for r in again.rounds)
    (aside,) = (store.root / ".quarantine" / "runs").iterdir()
    assert (aside / key / name).stat().st_size < (store.path("runs", key) / name).stat().st_size
    assert damage(store.path("runs", key)) is None


def test_a_damaged_fine_tune_is_recomputed(pristine, tmp_path, generated_glue):
    store = copy(pristine, tmp_path)
    ticket = store.path("finetunes", pristine[1].rounds[-1].key)
    (ticket / "dev_logits.npy").write_bytes(b"not numpy")
    shutil.rmtree(store.path("runs", pristine[1].key))
    again = run_seed(SPEC, store, generated_glue)
    assert again.rounds[0].reused and not again.rounds[-1].reused  # only the damaged fine-tune was trained again
    np.testing.assert_array_equal(again.dev_logits, pristine[1].dev_logits)


@pytest.mark.parametrize("unlisted", [False, True])
def test_deleting_or_emptying_the_manifest_does_not_turn_the_check_off(pristine, tmp_path, generated_glue, caplog,
                                                                        unlisted):
    store = copy(pristine, tmp_path)
    key = pristine[1].key
    folder = store.path("runs", key)
    edited = pristine[1].dev_logits.copy()
    edited[:, 0] += 5.0  # a changed result, still a valid .npy
    np.save(folder / "dev_logits.npy", edited)
    if unlisted:  # a manifest that no longer lists the edited file
        files = json.loads((folder / MANIFEST).read_text())["files"]
        (folder / MANIFEST).write_text(json.dumps({"files": {k: v for k, v in files.items()
                                                            if k != "dev_logits.npy"}}))
    else:
        (folder / MANIFEST).unlink()
    with caplog.at_level(logging.WARNING, logger="mte.store"):
        again = run_seed(SPEC, store, generated_glue)
    why = "dev_logits.npy is not in MANIFEST.json" if unlisted else "MANIFEST.json is missing"
    (warning,) = [r.getMessage() for r in caplog.records]
    assert f"runs/{key} {why}; moved to" in warning
    assert not again.loaded and all(r.reused for r in again.rounds)  # recomputed from its stored fine-tunes
    np.testing.assert_array_equal(again.dev_logits, pristine[1].dev_logits)
    assert damage(folder) is None and run_seed(SPEC, store, generated_glue).loaded  # signed as written


def test_adding_a_file_signs_only_that_file(pristine, tmp_path):
    store = copy(pristine, tmp_path)
    folder = store.path("runs", pristine[1].key)
    (folder / "dev_labels.npy").write_bytes(b"changed")
    store.add_file("runs", pristine[1].key, "extra.npy", lambda p: p.write_bytes(b"new"))
    assert damage(folder) == "dev_labels.npy does not match its checksum"  # not re-signed as it is now


def test_a_result_store_is_never_an_unrelated_folder(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    with pytest.raises(MteError, match="not an mte result store"):
        check_root(tmp_path / "home")
    (tmp_path / "file").write_text("x")
    with pytest.raises(MteError, match="is a file"):
        check_root(tmp_path / "file")
    check_root(tmp_path / "new")  # fine: created on first write


def test_damaged_mlflow_artifacts_are_one_line_naming_the_run_and_file(pristine, tmp_path):
    from mlflow import MlflowClient

    from tracking.load import load_result

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("x", artifact_location=(tmp_path / "art").as_uri()),
                            run_name="baseline-s0")
    folder = tmp_path / "download"
    shutil.copytree(pristine[0].path("runs", pristine[1].key), folder)
    assert load_result(client.get_run(run.info.run_id), folder).key == pristine[1].key
    truncate(folder / "dev_logits.npy")
    with pytest.raises(MteError, match=r"run \w+ \(baseline-s0\): its artifact dev_logits.npy does not match"):
        load_result(client.get_run(run.info.run_id), folder)
    (folder / MANIFEST).write_text(json.dumps({"files": {}}))  # a manifest that lists nothing vouches for nothing
    with pytest.raises(MteError, match=r"its artifact dev_labels.npy is not in MANIFEST.json; the recorded result "
                                       r"is damaged"):
        load_result(client.get_run(run.info.run_id), folder)
    (folder / MANIFEST).unlink()
    with pytest.raises(MteError, match=r"\(baseline-s0\): its artifact MANIFEST.json is missing"):
        load_result(client.get_run(run.info.run_id), folder)
