"""Where runs are recorded: the tracking options every command that touches MLflow takes, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mte.errors import MteError
from mte.fields import hp

# The width of the experiment name's column in MLflow's database (MLflow's own check allows 500, which a MySQL or
# PostgreSQL store would then refuse)
MAX_EXPERIMENT_NAME = 256


@dataclass(frozen=True)
class TrackingOptions:
    PANEL: ClassVar[str] = "Tracking"
    experiment: str = hp("mte", "MLflow experiment name.")
    tracking_uri: str | None = hp(None, "MLflow tracking URI (a server, or a database). Default: "
                                        "sqlite:///<working dir>/mlflow.db.", envvar="MLFLOW_TRACKING_URI")
    artifact_location: str | None = hp(None, "Artifact location of a new experiment. Default: <db folder>/"
                                             "mlartifacts/<experiment> for sqlite, the server's for servers.")

    def validate(self) -> TrackingOptions:
        """What the tracking store would refuse only after Ray started: a name it cannot hold, a malformed URI."""
        from tracking.uri import check_server_uri

        if not self.experiment.strip():
            raise MteError("--experiment must not be empty")
        if len(self.experiment) > MAX_EXPERIMENT_NAME:
            raise MteError(f"--experiment is {len(self.experiment)} characters long; MLflow's database holds "
                           f"names of at most {MAX_EXPERIMENT_NAME}")
        if self.tracking_uri:
            check_server_uri(self.tracking_uri)
        return self
