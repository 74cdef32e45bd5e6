"""Where runs are recorded: the tracking options every command that touches MLflow takes, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mte.fields import hp


@dataclass(frozen=True)
class TrackingOptions:
    PANEL: ClassVar[str] = "Tracking"
    experiment: str = hp("mte", "MLflow experiment name.")
    tracking_uri: str | None = hp(None, "MLflow tracking URI (a server, or a database). Default: "
                                        "sqlite:///<working dir>/mlflow.db.", envvar="MLFLOW_TRACKING_URI")
    artifact_location: str | None = hp(None, "Artifact location of a new experiment. Default: <db folder>/"
                                             "mlartifacts/<experiment> for sqlite, the server's for servers.")
