"""What produced a run: the code (git commit, the command), who ran it, package versions, the installed
requirements and the data, in the names MLflow's UI shows (Source, User, Version, Dataset columns)."""

from __future__ import annotations

import getpass
import json
import platform
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from mte import allocator

PACKAGES = ("mte", "torch", "transformers", "ray", "mlflow")
VERSION_TAG = "version.{}"  # one tag per package: version.torch = 2.13.0
SOURCE_NAME, SOURCE_TYPE, GIT_COMMIT, USER = ("mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit",
                                              "mlflow.user")
REQUIREMENTS = "environment/requirements.txt"  # artifact of a sweep's parent run


def versions() -> dict[str, str]:
    """Versions of mte, torch, transformers, ray, mlflow and Python in this process's environment, and the
    allocator it runs under (`mte.launch`: it changes speed and memory, not results)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out | {"python": platform.python_version(), "malloc": allocator.allocator()}


@cache
def git_commit() -> str | None:
    """The commit of the checkout mte runs from, if it is one (with `+dirty` when files differ from it)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def tags(source: str) -> dict[str, str]:
    """Provenance tags of a run recorded by `source` (e.g. "mte sweep"): command, user, commit, versions."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    out = {SOURCE_NAME: source, SOURCE_TYPE: "LOCAL", USER: user}
    commit = git_commit()
    if commit:
        out[GIT_COMMIT] = commit
    return out | {VERSION_TAG.format(k): v for k, v in versions().items()}


def requirements() -> str:
    """Every installed distribution as `name==version`, sorted (the environment that ran the driver)."""
    found = {(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    header = f"# python {platform.python_version()} ({sys.executable})\n"
    return header + "".join(f"{n}=={v}\n" for n, v in sorted(found.items()))


def dataset_inputs(task: Any, data_dir: Path | None, fingerprint: str, sizes: dict[str, int],
                   holdout: bool = False) -> list:
    """MLflow dataset inputs for a run's splits: name (task-split), digest (the data fingerprint), source (the TSV
    file or the hub dataset), context (train/dev/test; `holdout`: "dev" is a seeded part of train) and the number
    of examples."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    out = []
    for name, n in sizes.items():
        split = "train" if holdout and name == "dev" else name
        name = "holdout" if holdout and name == "dev" else name
        if data_dir is not None:
            from mte.data import split_file

            source_type, source = "local", {"uri": str(split_file(task, data_dir, split))}
        else:
            source_type, source = "hugging_face", {"path": "nyu-mll/glue", "config_name": task.hub_name,
                                                   "split": {"dev": "validation"}.get(split, split)}
        dataset = Dataset(name=f"{task.folder}-{name}", digest=fingerprint[:36], source_type=source_type,
                          source=json.dumps(source), profile=json.dumps({"examples": n}))
        out.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", name)]))
    return out
