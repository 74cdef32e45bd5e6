"""The MLflow UI over a sweep's tracking store (`mte ui`): its options and the server command line."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

from mte.errors import MteError
from mte.fields import hp
from tracking.uri import default_artifact_root


@dataclass(frozen=True)
class UiOptions:
    PANEL: ClassVar[str] = "UI"
    host: str = hp("127.0.0.1", "Address to bind; 127.0.0.1 keeps it local.")
    port: int = hp(5000, "Port of the UI.")


RUNS_VIEW = "workflowType=machine_learning"  # MLflow 3's UI opens experiments on its GenAI view without it


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's runs table (the model-training view, not the GenAI overview)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{RUNS_VIEW}"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{RUNS_VIEW}"


def ui_base(uri: str, o: UiOptions | None = None) -> str:
    """Where the UI for a tracking URI is: the server itself, or `mte ui`'s address for a local store."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    o = o or UiOptions()
    host = "127.0.0.1" if o.host in ("0.0.0.0", "::") else o.host
    return f"http://{host}:{o.port}"


def links(client: Any, base: str, experiment: str) -> list[str]:
    """Lines with the experiment's runs view and its latest sweep (what a user clicks first)."""
    from tracking.experiment import find_parent

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    out = [f"runs of experiment {experiment!r}: {runs_url(base, exp.experiment_id)}"]
    parent = find_parent(client, exp.experiment_id)
    if parent is not None:
        out.append(f"latest sweep {parent.info.run_name}: {run_url(base, exp.experiment_id, parent.info.run_id)}")
    return out


def check_bindable(host: str, port: int) -> None:
    """The UI's address must be free: `mlflow ui` would otherwise fail after starting (or exit 0)."""
    if not 1 <= port <= 65535:
        raise MteError(f"--port must be in 1..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise MteError(f"--host {host!r} is not an address of this machine ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind(address)
        except OSError as e:
            raise MteError(f"cannot serve the UI on {host}:{port}: {e.strerror} (another server there? try --port)") \
                from None


def ui_command(uri: str, o: UiOptions) -> list[str]:
    """`mlflow ui` for a local store (artifacts beside the database), after checking its address is free."""
    check_bindable(o.host, o.port)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", o.host, "--port", str(o.port)]
    root = default_artifact_root(uri)
    if root is not None:
        cmd += ["--default-artifact-root", root.as_uri()]
    return cmd
