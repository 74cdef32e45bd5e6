"""What produced a run: package versions (and, for MLflow's Source columns, the code that ran)."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("mte", "torch", "transformers", "ray", "mlflow")


def versions() -> dict[str, str]:
    """Versions of mte, torch, transformers, ray, mlflow and Python in this process's environment."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out | {"python": platform.python_version()}
