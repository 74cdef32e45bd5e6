"""`mte ui`: the MLflow UI against a sweep's tracking store (the working directory's by default)."""

from __future__ import annotations

import os
import sys

from rich.console import Console

from mte.cli.options import options
from tracking.options import TrackingOptions
from tracking.ui import UiOptions

console = Console(stderr=True)


@options(tracking=TrackingOptions, ui=UiOptions, exclude=("artifact_location",))
def ui(tracking: TrackingOptions, ui: UiOptions) -> None:
    """Start the MLflow UI against a sweep's tracking store (the working directory's by default) and print the links
    to the experiment's runs and its latest sweep."""
    from tracking.ui import links, ui_base, ui_command
    from tracking.uri import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking.tracking_uri, must_exist=True)
    base = ui_base(uri, ui)
    if uri.startswith(("http://", "https://")):
        console.print(f"{uri} is a tracking server: its UI is at that address", highlight=False)
        for line in links(check_reachable(uri), base, tracking.experiment):
            console.print(line, highlight=False, soft_wrap=True)
        return
    cmd = ui_command(uri, ui)
    console.print(f"MLflow UI at http://{ui.host}:{ui.port} for {uri} (Ctrl-C stops it)", highlight=False)
    for line in links(check_reachable(uri), base, tracking.experiment):
        console.print(line, highlight=False, soft_wrap=True)
    sys.stdout.flush()
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # GenAI job workers: not needed here
    os.execv(sys.executable, cmd)
