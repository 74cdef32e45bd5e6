"""GLUE data: read a split (local GLUE TSV folder or the Hugging Face hub), tokenise it once, cache it.

TSVs are read with a tab delimiter and no quote processing (sentences contain quotes); a byte-order mark
is dropped. Labels become the hub's ids (strings in `TaskSpec.labels` order) or float scores (STS-B).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from mte.batches import TokenizedSplit, pad_id
from mte.errors import MteError
from mte.hparams import DataHparams, digest
from mte.paths import DATA_DIR_ENV
from mte.tasks import TaskSpec

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class RawSplit:
    """Texts and labels of one split; labels is None for unlabelled (test) splits."""

    texts: tuple[tuple[str, ...], ...]  # one tuple per text column
    labels: np.ndarray | None  # int64 class ids or float32 scores
    source: str  # file path or hub name, for messages

    def __len__(self) -> int:
        return len(self.texts[0])

    def subset(self, index: np.ndarray | slice) -> RawSplit:
        pick = (lambda col: col[index]) if isinstance(index, slice) else (lambda col: tuple(col[i] for i in index))
        return RawSplit(tuple(pick(t) for t in self.texts), None if self.labels is None else self.labels[index],
                        self.source)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise MteError(f"data directory {path} does not exist")
    return path


def split_file(task: TaskSpec, data_dir: Path, split: str) -> Path:
    name = {"train": "train", "dev": task.dev_split, "test": task.test_split}[split]
    return data_dir / task.folder / f"{name}.tsv"


def read_tsv_split(task: TaskSpec, path: Path, split: str) -> RawSplit:
    """Parse one GLUE TSV file; any malformed line is reported with its file and line number."""
    if not path.is_file():
        raise MteError(f"missing data file {path}")
    try:
        lines = path.read_text(encoding="utf-8-sig").split("\n")  # as csv: splitlines splits at \f, U+2028…
    except UnicodeDecodeError as e:
        raise MteError(f"{path}: not UTF-8 text ({e.reason})") from None
    labelled = split != "test"
    header_present = task.has_header or split == "test"  # CoLA's test file has a header, train/dev none
    start = 1 if header_present else 0
    if header_present:
        if not lines:
            raise MteError(f"{path}: empty file (no header)")
        header = lines[0].split("\t")

        def col(ref: str | int) -> int:
            if isinstance(ref, int):
                return ref
            if ref not in header:
                raise MteError(f"{path}:1: header has no column {ref!r} (found: {', '.join(header)})")
            return header.index(ref)

        if split == "test" and not task.has_header:
            text_cols = [header.index("sentence") if "sentence" in header else len(header) - 1]
        else:
            text_cols = [col(c) for c in task.tsv_text_columns]
        label_col = col(task.tsv_label_column) if labelled else None
    else:
        text_cols = [int(c) for c in task.tsv_text_columns]
        label_col = int(task.tsv_label_column)
    need = max([*text_cols, label_col if label_col is not None else 0]) + 1
    texts: list[list[str]] = [[] for _ in text_cols]
    labels: list[float | int] = []
    for lineno, line in enumerate(lines[start:], start=start + 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < need:
            raise MteError(f"{path}:{lineno}: expected at least {need} tab-separated fields, found {len(fields)}")
        for bucket, c in zip(texts, text_cols, strict=True):
            bucket.append(fields[c])
        if label_col is not None:
            labels.append(parse_label(task, fields[label_col], f"{path}:{lineno}"))
    if not texts[0]:
        raise MteError(f"{path}: no examples in the {split} split")
    label_array = None
    if labelled:
        label_array = np.asarray(labels, dtype=np.float32 if task.is_regression else np.int64)
    return RawSplit(tuple(tuple(t) for t in texts), label_array, str(path))


def parse_label(task: TaskSpec, value: str, where: str) -> float | int:
    value = value.strip()
    if task.labels is None:
        try:
            score = float(value)
        except ValueError:
            raise MteError(f"{where}: score {value!r} is not a number") from None
        if not (0.0 <= score <= 5.0):
            raise MteError(f"{where}: score {score} is outside the task's range [0, 5]")
        return score
    if value not in task.labels:
        raise MteError(f"{where}: label {value!r} is not one of the task's labels {list(task.labels)}")
    return task.labels.index(value)


def load_hub_split(task: TaskSpec, split: str) -> RawSplit:
    """The same split from the Hugging Face hub (`glue/<task>`); needs internet or a warm cache."""
    import datasets

    hub_split = {"train": "train", "dev": "validation", "test": "test"}[split]
    if task.name == "mnli" and split != "train":
        hub_split += "_matched"
    try:
        ds = datasets.load_dataset("nyu-mll/glue", task.hub_name, split=hub_split)
    except Exception as e:  # network, missing cache: the hub client raises many types
        raise MteError(f"could not load glue/{task.hub_name} [{hub_split}] from the Hugging Face hub "
                       f"({type(e).__name__}); pass --data-dir or set {DATA_DIR_ENV}") from None
    texts = tuple(tuple(ds[c]) for c in task.text_columns)
    labels = None
    if split != "test":
        dtype = np.float32 if task.is_regression else np.int64
        labels = np.asarray(ds["label"], dtype=dtype)
    return RawSplit(texts, labels, f"hub:glue/{task.hub_name}/{hub_split}")


def load_split(task: TaskSpec, data_dir: Path | None, split: str) -> RawSplit | None:
    """A split, or None for a test split that the folder does not have."""
    if data_dir is None:
        return load_hub_split(task, split)
    path = split_file(task, data_dir, split)
    if split == "test" and not path.exists():
        return None
    return read_tsv_split(task, path, split)


def load_splits(task: TaskSpec, data_dir: Path | None, hp: DataHparams) -> dict[str, RawSplit | None]:
    """train, dev and test with the limits applied (before tokenising: quick runs skip the rest)."""
    splits = {}
    for split in SPLITS:
        raw = load_split(task, data_dir, split)
        limit = hp.train_limit if split == "train" else hp.eval_limit
        if raw is not None and limit is not None and limit < len(raw):
            raw = raw.subset(slice(0, limit))
        splits[split] = raw
    return splits


@dataclass
class TaskData:
    """One task's splits, tokenised: what every fine-tune of a seed trains and evaluates on."""

    task: TaskSpec
    train: TokenizedSplit
    dev: TokenizedSplit  # the train holdout when tuning τ
    test: TokenizedSplit | None
    pad_id: int

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev)} | ({"test": len(self.test)} if self.test else {})


@dataclass
class TokenizedSplits:
    """train, dev and test (None where the data has no test split) as the tokenizer made them, before any
    holdout: what the tokenised-data cache holds (`save`/`load`, one safetensors file)."""

    splits: dict[str, TokenizedSplit | None]
    pad_id: int

    FILE: ClassVar[str] = "tokens.safetensors"

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        tensors = {f"{name}.{field}": value for name, split in self.splits.items() if split is not None
                   for field, value in split.tensors().items()}
        save_file(tensors, str(folder / self.FILE), metadata={"pad_id": str(self.pad_id)})

    @classmethod
    def load(cls, folder: Path) -> TokenizedSplits:
        from safetensors import safe_open

        fields: dict[str, dict[str, torch.Tensor]] = {}  # split → its tensors ("train.input_ids", …)
        with safe_open(str(folder / cls.FILE), framework="pt") as f:
            pad_id = int(f.metadata()["pad_id"])
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                split, field = key.split(".", 1)
                fields.setdefault(split, {})[field] = f.get_tensor(key)
        return cls({s: TokenizedSplit.from_tensors(fields[s]) if s in fields else None for s in SPLITS}, pad_id)


def tokenize_splits(task: TaskSpec, data_dir: Path | None, hp: DataHparams, tokenizer) -> TokenizedSplits:
    raw = load_splits(task, data_dir, hp)
    splits = {s: None if raw[s] is None else tokenize(raw[s], tokenizer, hp.max_length) for s in raw}
    return TokenizedSplits(splits, pad_id(tokenizer))


def task_data(task: TaskSpec, tokens: TokenizedSplits, hp: DataHparams) -> TaskData:
    """The splits a seed uses. With a holdout (tuning τ), held-out train examples stand in for dev and test is
    dropped: dev and test stay unseen."""
    train, dev, test = (tokens.splits[s] for s in SPLITS)
    if hp.holdout > 0:
        keep, held = holdout_split(len(train), hp.holdout)
        train, dev, test = train.subset(keep), train.subset(held), None
    return TaskData(task, train, dev, test, tokens.pad_id)


def tokens_key(task: TaskSpec, fingerprint: str, hp: DataHparams, tokenizer) -> str:
    """Names a tokenisation in the cache: the data, the limits and max length applied, and what the tokenizer
    does (its serialised state: vocabulary, normalisation, special tokens), not the model it came with."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    payload = {"task": task.name, "data": fingerprint, "max_length": hp.max_length, "train_limit": hp.train_limit,
               "eval_limit": hp.eval_limit, "tokenizer": type(tokenizer).__name__,
               "tokenizer_state": hashlib.sha256(state.encode()).hexdigest(), "pad_id": tokenizer.pad_token_id}
    return digest(payload)


def eval_labels(task: TaskSpec, data_dir: Path | None, hp: DataHparams) -> np.ndarray:
    """The labels a run's dev logits are scored against (the train holdout's when tuning), without tokenising."""
    raw = load_splits(task, data_dir, hp)
    if hp.holdout > 0:
        return raw["train"].labels[holdout_split(len(raw["train"]), hp.holdout)[1]]
    return raw["dev"].labels


def data_fingerprint(task: TaskSpec, data_dir: Path | None) -> str:
    """Identifies the data content, so results on different files never share a hash."""
    if data_dir is None:
        return f"hub:glue/{task.hub_name}"
    h = hashlib.sha256()
    for split in SPLITS:
        path = split_file(task, data_dir, split)
        if path.exists():
            h.update(_file_sha256(str(path), path.stat().st_mtime_ns, path.stat().st_size).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenize(raw: RawSplit, tokenizer, max_length: int) -> TokenizedSplit:
    enc = tokenizer(*[list(t) for t in raw.texts], truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    n, width = len(ids), max(len(x) for x in ids)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    input_ids = np.full((n, width), pad_id(tokenizer), dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64) if "token_type_ids" in enc else None
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        if types is not None:
            types[i, : len(row)] = enc["token_type_ids"][i]
    labels = None if raw.labels is None else torch.from_numpy(raw.labels)
    return TokenizedSplit(torch.from_numpy(input_ids), None if types is None else torch.from_numpy(types),
                          torch.from_numpy(lengths), labels)


HOLDOUT_SEED = 0x401D  # one split for every run seed: all τ samples and seeds see the same held-out set


def holdout_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): a seeded random `fraction` of n held out, both ascending, disjoint."""
    rng = np.random.default_rng(HOLDOUT_SEED)
    held = np.sort(rng.choice(n, size=max(1, round(fraction * n)), replace=False))
    return np.setdiff1d(np.arange(n), held), held

