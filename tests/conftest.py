"""Shared fixtures: real GLUE data when `../shared/data/glue` is present, generated MRPC-format data otherwise."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_GLUE = REPO.parent / "shared" / "data" / "glue"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = tuple(
    """the company said its shares rose sharply on monday after a report that profits fell in the third
    quarter while analysts expected a loss and investors sold stock of the bank""".split()
)


def write_mrpc(folder: Path, n_train: int = 96, n_dev: int = 40, n_test: int = 24, seed: int = 0) -> Path:
    """An MRPC-format folder (`<folder>/MRPC/{train,dev,test}.tsv`) of generated sentence pairs.

    Label 1 pairs are near-copies, label 0 pairs unrelated: learnable, so tests can see training work.
    """
    rng = random.Random(seed)
    task = folder / "MRPC"
    task.mkdir(parents=True, exist_ok=True)

    def pair() -> tuple[int, str, str]:
        a = " ".join(rng.choices(WORDS, k=rng.randint(6, 18)))
        if rng.random() < 0.6:
            words = a.split()
            words[rng.randrange(len(words))] = rng.choice(WORDS)
            return 1, a, " ".join(words)
        return 0, a, " ".join(rng.choices(WORDS, k=rng.randint(6, 18)))

    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        head = "Quality" if split != "test" else "index"
        lines = [f"\ufeff{head}\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(n):
            label, a, b = pair()
            lines.append(f"{label if split != 'test' else i}\t{i}\t{i + 1000}\t{a}\t{b}")
        (task / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_bad_inputs(root: Path) -> Path:
    """Files bad-input cases point at, under `root`: `not-a-model/` (a folder without config.json),
    `not-a-mask.safetensors`, `a-file` (a plain file), and `broken/MRPC/` whose train.tsv lacks its label column."""
    (root / "not-a-model").mkdir(parents=True)
    (root / "not-a-model" / "README.md").write_text("hello")
    (root / "not-a-mask.safetensors").write_text("{}")
    (root / "a-file").write_text("x")
    train = write_mrpc(root / "broken") / "MRPC" / "train.tsv"
    lines = train.read_text().splitlines()
    lines[0] = lines[0].replace("Quality", "Label")
    train.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def clean_registry(monkeypatch):
    """Plugins a test loads in this process are gone after it: other tests see the built-in methods only."""
    from mte import plugins
    from mte.methods import registry

    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    monkeypatch.setattr(plugins, "_loaded", {})


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    """Real GLUE folder if the shared data is beside the repo, else a generated MRPC folder."""
    if (SHARED_GLUE / "MRPC" / "train.tsv").exists():
        return SHARED_GLUE
    return write_mrpc(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def generated_glue(tmp_path_factory) -> Path:
    return write_mrpc(tmp_path_factory.mktemp("generated-glue"))


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray (2 CPUs) shared by the in-process sweep tests, started as a sweep starts it (loopback
    only, token authentication): starting Ray costs ~10 s."""
    from sweeps.cluster import RayOptions, connect

    cluster = connect(RayOptions(num_cpus=2, dashboard=False))
    yield
    cluster.shutdown()


@pytest.fixture(scope="session")
def sweep_store(tmp_path_factory) -> Path:
    """A result store shared by sweep tests, so a sweep repeated against another tracking store is cheap."""
    return tmp_path_factory.mktemp("sweep-store")
