"""The experiment and the sweep's parent run.

The experiment is created from the driver with an explicit artifact location (otherwise Ray's
`setup_mlflow` would put artifacts under Ray's temporary folder). A sweep is identified by a hash of its
shared hyperparameters and data, so running the same sweep again, or with more seeds or methods, reopens
the same parent run and its finished trials are skipped.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Param, Run
from mlflow.exceptions import MlflowException

from mte.errors import MteError, first_line
from tracking.options import TrackingOptions
from tracking.trial_runs import FINISHED, ROLE, ROLE_SWEEP, SWEEP, retry, search
from tracking.uri import check_reachable, default_artifact_location, resolve_tracking_uri

CONFIG_TAG = "sweep_config"  # JSON of the options that define the sweep (what `--resume` reads back)
PLUGINS_TAG = "plugins"  # JSON list of the plugins a sweep loaded (files by path, modules by name)
PRESET_TAG = "preset"  # the preset the sweep's options came from, if any
TAU_SOURCE_TAG = "tau_source"  # JSON: where τ came from (given, or a tuning: its run, task and split)
DRIVER_TAG = "driver"  # host:pid of the process driving the sweep


@dataclass
class Experiment:
    """A reachable tracking store and the experiment in it that a command records into."""

    client: MlflowClient
    uri: str
    experiment_id: str
    name: str


def connect(options: TrackingOptions) -> tuple[MlflowClient, str]:
    """(client, resolved URI) once the store answered (one line if not); creates nothing but a new sqlite file."""
    uri = resolve_tracking_uri(options.tracking_uri)
    return check_reachable(uri), uri


def open_experiment(options: TrackingOptions, client: MlflowClient | None = None) -> Experiment:
    """Connect (unless `client` is given) and create the experiment if needed."""
    uri = resolve_tracking_uri(options.tracking_uri)
    client = client or check_reachable(uri)
    location = options.artifact_location or default_artifact_location(uri, options.experiment)
    return Experiment(client, uri, ensure_experiment(client, options.experiment, location), options.experiment)


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            # A model-training experiment: the tag MLflow 3's UI reads for its default view (its 3.17 build decides
            # from the URL instead, so links add ?workflowType=machine_learning; see tracking/README.md).
            return client.create_experiment(name, artifact_location=artifact_location,
                                            tags={"mlflow.experimentKind": "custom_model_development"})
        except MlflowException as e:
            exp = client.get_experiment_by_name(name)  # created concurrently by another sweep
            if exp is None:
                raise MteError(f"cannot create experiment {name!r}: {first_line(e)}") from None
    if exp.lifecycle_stage != "active":
        raise MteError(f"experiment {name!r} is deleted; restore it in the MLflow UI or choose another --experiment")
    return exp.experiment_id


def find_parent(client: MlflowClient, experiment_id: str, sweep_hash: str | None = None,
                task: str | None = None) -> Run | None:
    """The sweep's parent run (the latest one; of any sweep when `sweep_hash` is None, of a task if given)."""
    query = f"tags.{ROLE} = '{ROLE_SWEEP}'" + (f" and tags.{SWEEP} = '{sweep_hash}'" if sweep_hash else "")
    query += f" and tags.task = '{task}'" if task else ""
    runs = list(search(client, experiment_id, query, order_by=["attributes.start_time DESC"]))
    return runs[0] if runs else None


def driver_tag() -> str:
    """Who drives a sweep: host and process id (what a second sweep of the same hash checks)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def running_elsewhere(parent: Run) -> str | None:
    """The driver of a RUNNING parent run if it is another live process on this host (None otherwise: not
    running, its driver died, or it ran on another host, which this host cannot check)."""
    driver = parent.data.tags.get(DRIVER_TAG, "")
    host, _, pid = driver.rpartition(":")
    if parent.info.status != "RUNNING" or host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return driver


def open_parent(client: MlflowClient, experiment_id: str, sweep_hash: str, name: str, tags: dict[str, str],
                params: dict[str, Any], config: dict[str, Any]) -> str:
    """Reopen this sweep's parent run (status RUNNING) or create it; returns its run id. Refuses (one line) while
    another live process on this host drives the same sweep."""
    tags = tags | {ROLE: ROLE_SWEEP, SWEEP: sweep_hash, CONFIG_TAG: json.dumps(config, sort_keys=True),
                   DRIVER_TAG: driver_tag()}
    parent = find_parent(client, experiment_id, sweep_hash)
    if parent is not None and (other := running_elsewhere(parent)):
        raise MteError(f"sweep {sweep_hash} is already running (driver {other}, parent run {parent.info.run_id}); "
                       "wait for it to finish, or stop it")
    if parent is None:
        run_id = retry(client.create_run, experiment_id, tags=tags, run_name=name).info.run_id
        retry(client.log_batch, run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run_id
    run_id = parent.info.run_id
    retry(client.update_run, run_id, status="RUNNING")
    for k, v in tags.items():
        retry(client.set_tag, run_id, k, v)
    return run_id


def close_parent(client: MlflowClient, run_id: str, status: str = FINISHED) -> None:
    retry(client.set_terminated, run_id, status)


def recorded_plugins(parent: Run) -> list[str]:
    """The plugins a sweep loaded, which its methods may need to resume."""
    try:
        found = json.loads(parent.data.tags.get(PLUGINS_TAG, "[]"))
    except ValueError:
        found = None
    if not isinstance(found, list) or not all(isinstance(p, str) for p in found):
        raise MteError(f"sweep run {parent.info.run_id}: its recorded plugins are not a JSON list of names")
    return found


def recorded_config(parent: Run) -> dict[str, Any]:
    text = parent.data.tags.get(CONFIG_TAG)
    if not text:
        raise MteError(f"sweep run {parent.info.run_id} has no recorded configuration to resume")
    try:
        config = json.loads(text)
    except ValueError:
        raise MteError(f"sweep run {parent.info.run_id}: its recorded configuration is not JSON") from None
    if not isinstance(config, dict):
        raise MteError(f"sweep run {parent.info.run_id}: its recorded configuration is not an object")
    return config
