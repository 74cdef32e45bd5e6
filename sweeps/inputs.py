"""Inputs a trial would fail on, found before Ray starts or a run is created: a model folder whose files cannot
make the model the run asks for, and splits too small for the holdout or bagging fraction asked for.

The model's files are checked by their headers (safetensors' public `safe_open` reads the header only), so the
check costs milliseconds, not a model load.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from mte.errors import MteError, first_line
from mte.hparams import RunSpec

MIN_EXAMPLES = 2  # what a split needs to train on or to evaluate (a correlation needs two points)
WIDTH_KEYS = ("embedding_size", "hidden_size", "dim")  # what sets the word embeddings' width, by model type
PICKLE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "pytorch_model.bin.index.json")


def check_model_files(spec: RunSpec) -> None:
    """A local model folder: its weights are safetensors and whole, config.json agrees with them (vocabulary and
    width of the word embeddings), and its positions hold --max-length tokens. A hub id is left to the loader."""
    from mte.models import resolve_model_path

    folder = Path(resolve_model_path(spec.model.model))
    if not folder.is_dir():
        return
    name = spec.model.model
    config = _config(folder, name)
    shapes = _weight_shapes(folder, name)
    _check_config(config, shapes, folder, name)
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and spec.data.max_length > positions:
        raise MteError(f"--max-length {spec.data.max_length} is more than model {name} can read: its "
                       f"max_position_embeddings is {positions}")


def _config(folder: Path, name: str) -> dict[str, Any]:
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise MteError(f"model {name}: cannot read config.json ({first_line(e)})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model_type"), str):
        raise MteError(f"model {name}: config.json has no model_type: not a Hugging Face model configuration")
    return raw


def _weight_shapes(folder: Path, name: str) -> dict[str, list[int]]:
    """Every tensor's shape, from the headers of model.safetensors (or of the shards its index lists)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise MteError(f"model {name}: cannot read {index.name} ({first_line(e)})") from None
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        pickled = [f for f in PICKLE_WEIGHTS if (folder / f).is_file()]
        if pickled:
            raise MteError(f"model {name} has only pickle weights ({pickled[0]}); mte reads safetensors only: "
                           "convert it (save_pretrained(..., safe_serialization=True))")
        raise MteError(f"model {name} has no weights: model.safetensors is missing")
    shapes: dict[str, list[int]] = {}
    for file in files:
        try:
            with safe_open(str(folder / file), framework="numpy") as f:
                shapes |= {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        except Exception as e:  # safetensors raises its own error type for a damaged or truncated file
            raise MteError(f"model {name}: {file} is damaged or incomplete ({first_line(e)})") from None
    return shapes


def _check_config(config: dict[str, Any], shapes: dict[str, list[int]], folder: Path, name: str) -> None:
    """config.json describes the weights beside it: a model built from it must take them (transformers would
    fail every trial on a size mismatch). Sizes config.json leaves out are the model type's defaults."""
    embedding = next((s for k, s in shapes.items() if k.endswith("word_embeddings.weight") and len(s) == 2), None)
    if embedding is None:
        return
    rows, width = embedding
    effective = config
    if "vocab_size" not in config or not set(WIDTH_KEYS) & set(config):
        effective = _defaults(folder, name) | config
    wide = next((effective[k] for k in WIDTH_KEYS if effective.get(k)), None)
    for key, got, want in (("vocab_size", effective.get("vocab_size"), rows), ("hidden_size", wide, width)):
        if got != want:
            said = key in config or (key == "hidden_size" and set(WIDTH_KEYS) & set(config))
            given = f"says {key} {got}" if said else f"leaves {key} out (the {config['model_type']} default: {got})"
            raise MteError(f"model {name}: config.json {given}, but its weights' word embeddings are "
                           f"{rows}×{width}: config.json does not describe these weights")


def _defaults(folder: Path, name: str) -> dict[str, Any]:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder)).to_dict()
    except Exception as e:  # transformers raises many types; the user needs one line
        raise MteError(f"model {name}: cannot read config.json ({first_line(e)})") from None


def check_sizes(spec: RunSpec, sizes: dict[str, int], methods: tuple[str, ...], holdout_flag: str = "--holdout"
                ) -> None:
    """The splits a trial sees (after --holdout) and every method's training subset (BAGGING's) hold enough
    examples."""
    train, dev = sizes.get("train", 0), sizes.get("dev", 0)
    if spec.data.holdout > 0 and min(train, dev) < MIN_EXAMPLES:
        raise MteError(f"{holdout_flag} {spec.data.holdout:g} of {train + dev} training examples leaves {train} to "
                       f"train on and {dev} to evaluate on; each needs at least {MIN_EXAMPLES}")
    if train < MIN_EXAMPLES:
        raise MteError(f"only {train} training example(s); at least {MIN_EXAMPLES} are needed")
    for name in methods:
        hp = dataclasses.replace(spec.method, method=name)
        method = hp.declared
        subset = method.train_subset(hp, 0, train)
        if subset is not None and len(subset) < MIN_EXAMPLES:
            given = (f"--bagging-fraction {hp.bagging_fraction:g} of {train} training examples gives"
                     if "bagging_fraction" in method.reads else f"of {train} training examples, {name} gives")
            raise MteError(f"{given} each {method.title()} member {len(subset)}; at least {MIN_EXAMPLES} are needed")


def check_data_files(spec: RunSpec, data_dir: Path | None) -> None:
    """Each split file of the task that is there is a readable file: a folder, a symlink loop or a dangling link
    is named as such (the reader would see "missing", or raise)."""
    from mte import data as data_mod

    if data_dir is None:
        return
    for split in ("train", "dev", "test"):
        path = data_mod.split_file(spec.task, data_dir, split)
        try:
            st = path.stat()
        except FileNotFoundError:
            if path.is_symlink():
                raise MteError(f"data file {path} is a symbolic link to nothing ({os.readlink(path)})") from None
            continue  # missing: the reader says so (a test split may be absent)
        except OSError as e:
            what = "a symbolic link loop" if e.errno == errno.ELOOP else "unreadable"
            raise MteError(f"data file {path} is {what} ({e.strerror})") from None
        if stat.S_ISDIR(st.st_mode):
            raise MteError(f"data file {path} is a folder, not a TSV file")
        if not os.access(path, os.R_OK):
            raise MteError(f"data file {path} is not readable (permission denied)")


def check_writable_folder(path: Path, flag: str) -> None:
    """`path` is a folder this process can write into, or can create: probed by writing, since permission bits
    do not tell for root, a read-only mount or an immutable folder."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise MteError(f"{flag} {path} is a file; it must name a folder")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise MteError(f"{flag} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".mte-probe-"):
            pass
    except OSError as e:
        raise MteError(f"{flag} {path}: cannot write in {existing} ({e.strerror})") from None
