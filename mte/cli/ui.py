"""`mte ui`: the MLflow UI against a sweep's tracking store (the working directory's by default)."""

from __future__ import annotations

import os
import sys

from rich.console import Console

from mte.cli.options import options
from tracking.options import TrackingOptions
from tracking.ui import UiOptions

console = Console(stderr=True)


@options(tracking=TrackingOptions, ui=UiOptions, exclude=("experiment", "artifact_location"))
def ui(tracking: TrackingOptions, ui: UiOptions) -> None:
    """Start the MLflow UI against a sweep's tracking store (the working directory's by default)."""
    from tracking.ui import ui_command
    from tracking.uri import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking.tracking_uri, must_exist=True)
    if uri.startswith(("http://", "https://")):
        console.print(f"{uri} is a tracking server: its UI is at that address", highlight=False)
        return
    cmd = ui_command(uri, ui)
    console.print(f"MLflow UI at http://{ui.host}:{ui.port} for {uri} (Ctrl-C stops it)", highlight=False)
    sys.stdout.flush()
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # GenAI job workers: not needed here
    os.execv(sys.executable, cmd)
