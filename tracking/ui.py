"""The MLflow UI over a sweep's tracking store (`mte ui`): its options and the server command line."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import ClassVar

from mte.errors import MteError
from mte.fields import hp
from tracking.uri import default_artifact_root, sqlite_path


@dataclass(frozen=True)
class UiOptions:
    PANEL: ClassVar[str] = "UI"
    host: str = hp("127.0.0.1", "Address to bind; 127.0.0.1 keeps it local.")
    port: int = hp(5000, "Port of the UI.")


def ui_command(uri: str, o: UiOptions) -> list[str]:
    """`mlflow ui` for a local store (artifacts beside the database), after checking the store exists."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise MteError(f"no tracking store at {db}; run `mte sweep` here first or pass --tracking-uri")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", o.host, "--port", str(o.port)]
    root = default_artifact_root(uri)
    if root is not None:
        cmd += ["--default-artifact-root", root.as_uri()]
    return cmd
