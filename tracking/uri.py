"""Where runs are recorded: the default sqlite store in the working directory, and a fail-fast reachability check.

MLflow 3 refuses `file:` tracking stores by default, so the default is `sqlite:///<cwd>/mlflow.db` with
artifacts in `<db folder>/mlartifacts/<experiment>`. Paths are made absolute because Ray Tune runs each
trial in its own working directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from mte.errors import MteError

DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
SQLITE_PREFIX = "sqlite:///"


def resolve_tracking_uri(uri: str | None) -> str:
    """The given URI with a relative sqlite path made absolute; None → the working directory's sqlite file."""
    if not uri:
        return SQLITE_PREFIX + str(Path.cwd() / DEFAULT_DB)
    path = sqlite_path(uri)
    if path is not None:
        return SQLITE_PREFIX + str(path)
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite URI (absolute), else None."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    rest = uri[len(SQLITE_PREFIX):].split("?", 1)[0]
    return Path(rest).expanduser().resolve() if rest and rest != ":memory:" else None


def default_artifact_location(uri: str, experiment: str) -> str | None:
    """A local folder for sqlite stores (beside the database); None lets a server choose its own."""
    db = sqlite_path(uri)
    if db is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-") or "experiment"
    return (db.parent / ARTIFACT_DIR / slug).as_uri()


def default_artifact_root(uri: str) -> Path | None:
    db = sqlite_path(uri)
    return db.parent / ARTIFACT_DIR if db is not None else None


@contextlib.contextmanager
def quick_http() -> Iterator[None]:
    """MLflow retries HTTP calls for minutes by default; a preflight check should fail in seconds."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_reachable(uri: str):
    """An MlflowClient for `uri` after one real call succeeded; MteError (one line) otherwise."""
    from mlflow import MlflowClient

    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "", port), timeout=5).close()
        except OSError as e:
            raise MteError(f"tracking server {uri} is unreachable ({e.strerror or e})") from None
    client = MlflowClient(uri)
    db_log = logging.getLogger("mlflow.store.db.utils")  # "Creating initial MLflow database tables..."
    level = db_log.level
    db_log.setLevel(logging.WARNING)
    try:
        with quick_http():
            client.search_experiments(max_results=1)
    except Exception as e:  # MLflow raises many types (HTTP, SQLAlchemy, MlflowException)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MteError(f"cannot use tracking URI {uri}: {first}") from None
    finally:
        db_log.setLevel(level)
    return client
