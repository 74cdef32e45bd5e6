"""Where a run's inputs come from and its results go: the GLUE data folder and the result store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mte.fields import hp

DATA_DIR_ENV = "MTE_DATA_DIR"
STORE_ENV = "MTE_STORE"
NODE_STORE = Path("~/.cache/mte/store")  # a cluster node's own result store, unless MTE_STORE names another


def node_store() -> Path:
    """The result store of the machine this runs on (a cluster node): $MTE_STORE, else ~/.cache/mte/store."""
    return Path(os.environ.get(STORE_ENV) or NODE_STORE).expanduser().absolute()


@dataclass(frozen=True)
class Paths:
    PANEL: ClassVar[str] = "Files"
    data_dir: Path | None = hp(None, "Folder in the GLUE TSV layout (MRPC/train.tsv, ...); without it, data comes "
                                     "from the Hugging Face hub.", envvar=DATA_DIR_ENV)
    store: Path = hp(Path("mte-store"), "Result store: finished work there is reused, never overwritten.",
                     flag="--out", envvar=STORE_ENV)
