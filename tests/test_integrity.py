"""Inputs and stored results that would give silently wrong numbers are refused or treated as damage: a model folder
whose tokenizer is missing or foreign, a store entry without its manifest, an ACTIVE-LT prior mask whose bytes do
not match the manifest recorded with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
