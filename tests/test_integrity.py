"""Inputs and stored results that would give silently wrong numbers are refused or treated as damage: a model folder
whose tokenizer is missing or foreign, a store entry without its manifest, an ACTIVE-LT prior mask whose bytes do
not match the manifest recorded with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mte.errors import MteError
from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from mte.lottery import check_inputs
from mte.models import resolve_model_path

MINILM = Path(resolve_model_path("minilm"))


def model_folder(root: Path, vocab: list[str] | None = None) -> Path:
    """MiniLM's config and weights, with no tokenizer (or a vocab.txt of `vocab`)."""
    root.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (root / name).symlink_to(MINILM / name)
    if vocab is not None:
        (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return root


def spec_of(model: Path) -> RunSpec:
    return RunSpec(DataHparams(train_limit=8, eval_limit=8), ModelHparams(str(model)), TrainHparams(epochs=1),
                   MethodHparams(), 0).resolved()


def test_a_model_folder_without_its_tokenizer_is_refused_before_anything_runs(tmp_path, generated_glue):
    folder = model_folder(tmp_path / "no-tokenizer")
    with pytest.raises(MteError, match=r"its tokenizer has 5 tokens, the model's vocabulary 30522: they do not "
                                       r"belong together \(the folder has no tokenizer files"):
        check_inputs(spec_of(folder), generated_glue)  # the sweep's pre-flight
    out = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "mte", "run", "--model", str(folder), "--data-dir",
                           str(generated_glue), "--out", str(out), "--epochs", "1", "--train-limit", "8",
                           "--eval-limit", "8"], capture_output=True, text=True, timeout=300,
                          env=os.environ | {"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: model {folder}: its tokenizer has 5 tokens")
    assert not (out / "runs").exists() and not (out / "finetunes").exists()


def test_a_tokenizer_of_the_right_size_that_knows_no_english_is_refused(tmp_path, generated_glue):
    foreign = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"zq{i}" for i in range(30517)]
    with pytest.raises(MteError, match=r"its tokenizer reads \d+ of \d+ tokens of an English sentence as unknown"):
        check_inputs(spec_of(model_folder(tmp_path / "foreign", foreign)), generated_glue)


def test_the_bundled_model_and_a_copy_with_its_tokenizer_pass(tmp_path, generated_glue):
    vocab = (MINILM / "vocab.txt").read_text().splitlines()
    assert check_inputs(spec_of(model_folder(tmp_path / "vocab-only", vocab)), generated_glue)["train"] == 8
    assert check_inputs(spec_of(MINILM), generated_glue)["train"] == 8


def test_a_recorded_mask_is_trusted_only_as_its_manifest_says(tmp_path):
    from mlflow import MlflowClient

    from mte.masks import Mask
    from mte.store import MANIFEST, Store
    from tracking.trial_runs import recorded_mask

    mask = Mask({"encoder.w": torch.rand(64, 64) > 0.3, "encoder.v": torch.rand(8, 128) > 0.3}, model="minilm")
    folder = Store(tmp_path / "store").write("runs", "k", lambda f: (mask.save(f / "mask.safetensors"),
                                                                     (f / "result.json").write_text("{}")))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("x", (tmp_path / "art").as_uri())).info.run_id
    client.log_artifacts(run_id, str(folder))
    got, why = recorded_mask(client, run_id)
    assert why is None and got.digest() == mask.digest()
    artifact = tmp_path / "art" / run_id / "artifacts" / "mask.safetensors"
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF  # a changed bit of the mask: still a loadable file
    artifact.write_bytes(bytes(data))
    assert Mask.load(artifact).digest() != mask.digest()
    assert recorded_mask(client, run_id) == (None, "mask.safetensors does not match its checksum")
    (artifact.parent / MANIFEST).unlink()
    got, why = recorded_mask(client, run_id)
    assert got is None and why.startswith("has no readable MANIFEST.json listing mask.safetensors")


def test_an_active_lt_chain_recomputes_a_prior_mask_whose_recorded_artifact_was_changed(ray_local, glue_dir,
                                                                                          tmp_path):
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from mte.cli import app
    from mte.masks import Mask
    from mte.results import SeedResult
    from tracking.load import load_sweep

    uri, store = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "store"

    def sweep(seeds: int):
        result = CliRunner().invoke(app, [
            "sweep", "--methods", "active-lt", "--seeds", str(seeds), "--train-limit", "16", "--eval-limit", "8",
            "--epochs", "1", "--max-length", "32", "--batch-size", "16", "--rounds", "1", "--data-dir",
            str(glue_dir), "--out", str(store), "--tracking-uri", uri, "--experiment", "chain", "--no-report"])
        assert result.exit_code == 0, result.output + repr(result.exception)

    sweep(2)
    client = MlflowClient(uri)
    runs = {int(r.data.tags["seed"]): r for r in client.search_runs(
        [client.get_experiment_by_name("chain").experiment_id], "tags.role = 'trial'")}
    truth = [Mask.load(Path(runs[s].info.artifact_uri.removeprefix("file://")) / "mask.safetensors").digest()
             for s in (0, 1)]
    artifact = Path(runs[0].info.artifact_uri.removeprefix("file://")) / "mask.safetensors"
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF
    artifact.write_bytes(bytes(data))
    shutil.rmtree(store)
    sweep(3)
    (seed2,) = [r for r in client.search_runs([client.get_experiment_by_name("chain").experiment_id],
                                             "tags.role = 'trial' and tags.seed = '2'")]
    folder = Path(seed2.info.artifact_uri.removeprefix("file://"))
    assert SeedResult.load(folder).prior_masks == sorted(truth)  # the masks seeds 0 and 1 really ended with
    with pytest.raises(MteError, match=r"\(active-lt-s0\): its artifact mask.safetensors does not match its "
                                       r"checksum; the recorded result is damaged"):
        load_sweep("chain", uri)  # what `mte report` reads: the damaged run is named, not reported on


def test_an_entry_fetched_from_the_shared_store_is_trusted_only_as_its_manifest_says(tmp_path, caplog):
    import logging

    from mlflow import MlflowClient

    from mte.store import Store, damage
    from tracking.remote import STORE_EXPERIMENT, MlflowRemote, store_run

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_experiment(STORE_EXPERIMENT, (tmp_path / "art").as_uri())
    remote = MlflowRemote(client, store_run(client))
    Store(tmp_path / "a", remote).write("runs", "k", lambda f: (f / "result.json").write_text('{"x": 1}'))
    extra = tmp_path / "test_logits.npy"  # a file the entry's manifest does not vouch for
    extra.write_bytes(b"unlisted")
    client.log_artifact(remote.run_id, str(extra), "runs/k")
    b = Store(tmp_path / "b", remote)
    assert b.has("runs", "k") and damage(b.path("runs", "k")) is None
    assert sorted(p.name for p in b.path("runs", "k").iterdir()) == ["MANIFEST.json", "result.json"]
    changed = tmp_path / "result.json"
    changed.write_text('{"x": 2}')
    client.log_artifact(remote.run_id, str(changed), "runs/k")  # the listed file, changed
    with caplog.at_level(logging.WARNING, logger="mte.store"):
        assert not Store(tmp_path / "c", remote).has("runs", "k")
    assert "the remote copy of runs/k is incomplete (result.json does not match its checksum)" in caplog.text
