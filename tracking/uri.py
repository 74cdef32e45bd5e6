"""Where runs are recorded: the default sqlite store in the working directory, and a fail-fast reachability check.

MLflow 3 refuses `file:` tracking stores by default, so the default is `sqlite:///<cwd>/mlflow.db` with
artifacts in `<db folder>/mlartifacts/<experiment>`. Paths are made absolute because Ray Tune runs each
trial in its own working directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from mte.errors import MteError, first_line

DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
SQLITE_PREFIX = "sqlite:///"


SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def resolve_tracking_uri(uri: str | None, must_exist: bool = False) -> str:
    """The given URI checked (one line if it cannot work) with a relative sqlite path made absolute; None → the
    working directory's sqlite file. `must_exist`: a command that only reads (report, resume, ui) must not
    create an empty database where there was none."""
    if not uri:
        uri = SQLITE_PREFIX + str(Path.cwd() / DEFAULT_DB)
    scheme = urlparse(uri).scheme.split("+", 1)[0]
    if not scheme or len(scheme) == 1:  # a path (or a Windows drive letter)
        raise MteError(f"tracking URI {uri!r} is a path, not a URI: use sqlite:///{Path(uri).expanduser().absolute()}"
                       f"{'/' + DEFAULT_DB if Path(uri).is_dir() else ''} or a server's http://host:port")
    if scheme not in SCHEMES:
        raise MteError(f"tracking URI {uri!r}: unknown scheme {scheme!r}; use sqlite:///<file>, http(s)://<server> "
                       f"or a database URI ({', '.join(SCHEMES[3:6])})")
    check_server_uri(uri)
    path = sqlite_path(uri)
    if uri.startswith("sqlite:") and path is None:
        raise MteError(f"tracking URI {uri!r}: give the database file as sqlite:///<absolute or relative path>")
    if path is not None:
        _check_sqlite_file(path, must_exist)
        return SQLITE_PREFIX + str(path)
    return uri


def check_server_uri(uri: str) -> None:
    """An http(s) URI names a host and a valid port (urllib raises for a port past 65535 only when asked)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    try:
        port = parsed.port
    except ValueError:
        raise MteError(f"tracking URI {uri!r}: the port must be a number in 1..65535") from None
    if not parsed.hostname or port == 0:
        raise MteError(f"tracking URI {uri!r}: give the server as http(s)://host:port")


def _check_sqlite_file(path: Path, must_exist: bool) -> None:
    """The database file can be written (or created): probed by writing, since permission bits do not tell for
    root, a read-only mount or an immutable file. MLflow would retry a read-only database for minutes."""
    if path.is_dir():
        raise MteError(f"tracking database {path} is a folder; name the file, e.g. sqlite:///{path / DEFAULT_DB}")
    if not path.exists():
        if must_exist:
            raise MteError(f"no tracking database at {path}; run `mte sweep` there first or pass --tracking-uri")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is None or not parent.is_dir():
            raise MteError(f"cannot create tracking database {path}: {parent} is not a folder")
        if not _writable_folder(parent):
            raise MteError(f"cannot create tracking database {path}: {parent} is read-only")
        return
    try:
        with open(path, "ab"):
            pass
    except OSError as e:
        raise MteError(f"tracking database {path} is read-only ({e.strerror}); MLflow must write to it") from None
    if not _writable_folder(path.parent):  # sqlite writes its journal beside the database
        raise MteError(f"tracking database {path}: its folder is read-only (sqlite writes its journal there)")


def _writable_folder(folder: Path) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mte-probe-"):
            return True
    except OSError:
        return False


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite URI (absolute), else None."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    rest = uri[len(SQLITE_PREFIX):].split("?", 1)[0]
    return Path(rest).expanduser().resolve() if rest and rest != ":memory:" else None


def default_artifact_location(uri: str, experiment: str) -> str | None:
    """A local folder for sqlite stores (beside the database); None lets a server choose its own. The experiment's
    name becomes a folder name that cannot leave `mlartifacts/` (no separators, no leading dots)."""
    db = sqlite_path(uri)
    if db is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-.") or "experiment"
    root = db.parent / ARTIFACT_DIR
    folder = (root / slug).resolve()
    if folder.parent != root.resolve():  # defensive: the slug has no separator or dot-only name
        raise MteError(f"experiment name {experiment!r} cannot name a folder in {root}")
    return folder.as_uri()


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
    db_log = logging.getLogger("mlflow.store.db.utils")  # "Creating initial MLflow database tables..."
    level = db_log.level
    db_log.setLevel(logging.WARNING)
    try:
        with quick_http(), _creating(sqlite_path(uri)):
            client = MlflowClient(uri)  # a new sqlite store creates its tables here
            client.search_experiments(max_results=1)
    except Exception as e:  # MLflow raises many types (HTTP, SQLAlchemy, MlflowException)
        raise MteError(f"cannot use tracking URI {uri}: {first_line(e)}") from None
    finally:
        db_log.setLevel(level)
    return client


@contextlib.contextmanager
def _creating(db: Path | None) -> Iterator[None]:
    """One process at a time opens a sqlite store: two creating the same new database race in MLflow's schema
    migration (one fails). The lock file sits beside the database."""
    if db is None:
        yield
        return
    with open(db.parent / f".{db.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
