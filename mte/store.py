"""A folder of results keyed by hyperparameter hash: write once, atomically, with checksums; read many times.

`<root>/<kind>/<key>/` holds one result. Writers build it in a temporary sibling, write `MANIFEST.json` (the
SHA-256 of every file) last, and rename it into place, so a crash never leaves a half-written result and nothing
stored is ever overwritten. Reading checks the manifest: a damaged or incomplete entry (a truncated file, a file
missing or changed, a file that does not load) is moved to `.quarantine/` with a one-line warning, never deleted,
and the caller recomputes it. An entry without a manifest, or with a file its manifest does not list, is damaged
too: deleting the manifest must not turn the check off. A per-key file lock makes concurrent processes asking for
the same work wait for one another instead of doing it twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from mte.errors import MteError, first_line

QUARANTINE = ".quarantine"  # entries moved aside (replaced or damaged), never deleted
MANIFEST = "MANIFEST.json"  # {"files": {name: sha256}}: written last, so its presence means complete
log = logging.getLogger("mte.store")
T = TypeVar("T")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path, files: dict[str, str] | None = None) -> None:
    """Sign `folder`: `files` (name → SHA-256), by default every file in it."""
    if files is None:
        files = {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": files}, indent=1))
    os.replace(tmp, folder / MANIFEST)


def damage(folder: Path) -> str | None:
    """Why `folder` is not a complete entry (None if it is): no manifest, a listed file missing or changed, a
    file the manifest does not list (temporary dot-files aside)."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"{MANIFEST} is missing"
    except (ValueError, KeyError, TypeError, OSError) as e:
        return f"unreadable {MANIFEST} ({type(e).__name__})"
    if not isinstance(files, dict) or any(not isinstance(n, str) or Path(n).name != n for n in files):
        return f"unreadable {MANIFEST} (not a list of file names)"
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256(path) != digest:
            return f"{name} does not match its checksum"
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != MANIFEST and not path.name.startswith(".") and path.name not in files:
            return f"{path.name} is not in {MANIFEST}"
    return None


def check_root(path: Path) -> None:
    """A result store is a new folder, or one that holds mte's results, never another folder (a typo in --out,
    or a path recorded in a tracking store that someone edited, must not spread results into it)."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise MteError(f"result store {path} is a file")
    if any(path.iterdir()) and not any((path / n).is_dir() for n in ("runs", "finetunes", ".locks")):
        raise MteError(f"result store {path} exists and is not an mte result store (no runs/ or finetunes/)")


class Remote(Protocol):
    """Where store entries live beyond this machine; the local store is its cache."""

    def fetch(self, kind: str, key: str, into: Path) -> bool:
        """Download entry `<kind>/<key>`'s files into the empty folder `into`; False if the remote lacks it."""

    def push(self, kind: str, key: str, folder: Path, files: list[str] | None = None) -> None:
        """Upload the entry's files (or only `files`), its manifest last: a reader never sees a manifest before
        the files it lists."""


class Store:
    def __init__(self, root: str | os.PathLike, remote: Remote | None = None):
        self.root = Path(root)
        self.remote = remote

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        """Whether a complete entry exists here (or, with a remote, there: then fetched); a damaged one is
        quarantined (and then does not exist)."""
        folder = self.path(kind, key)
        if not folder.is_dir():
            return self._fetch(kind, key)
        problem = damage(folder)
        if problem is None:
            return True
        self.quarantine(kind, key, problem)
        return self._fetch(kind, key)

    def _fetch(self, kind: str, key: str) -> bool:
        """The remote's copy of an entry, checked against its manifest, renamed into place (call under the lock)."""
        if self.remote is None:
            return False
        final = self.path(kind, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.fetch.", dir=self._mkdir(final.parent)))
        try:
            if not self.remote.fetch(kind, key, tmp):
                return False
            _drop_unlisted(tmp)
            problem = damage(tmp) if (tmp / MANIFEST).exists() else "no manifest (an upload in progress?)"
            if problem is not None:
                log.warning("result store: the remote copy of %s/%s is incomplete (%s); computing it here",
                            kind, key, problem)
                return False
            os.rename(tmp, final)
            return True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def load(self, kind: str, key: str, loader: Callable[[Path], T]) -> T | None:
        """`loader(folder)` of a complete entry; None if there is none or it cannot be read (then quarantined).
        Call under the lock."""
        if not self.has(kind, key):
            return None
        folder = self.path(kind, key)
        try:
            value = loader(folder)
        except (OSError, ValueError, KeyError, TypeError, EOFError, MteError) as e:
            self.quarantine(kind, key, f"does not load ({first_line(e)})")
            return None
        return value

    def quarantine(self, kind: str, key: str, why: str) -> Path:
        """Move an entry to `.quarantine/<kind>/<key>.<random>/` with a one-line warning (call under the lock)."""
        aside = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=self._mkdir(self.root / QUARANTINE / kind)))
        os.rename(self.path(kind, key), aside / key)
        log.warning("result store: %s/%s %s; moved to %s and recomputed", kind, key, why, aside / key)
        return aside / key

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        locks = self._mkdir(self.root / ".locks")
        with open(locks / f"{kind}-{key}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def write(self, kind: str, key: str, writer: Callable[[Path], None]) -> Path:
        """Create `<kind>/<key>/` from `writer(tmpdir)` and its manifest; a no-op if it already exists."""
        final = self.path(kind, key)
        if final.exists():
            return final
        parent = self._mkdir(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=parent))
        try:
            with _disk_full_is_an_error(self.root):
                writer(tmp)
                write_manifest(tmp)
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if self.remote is not None:
            self.remote.push(kind, key, final)
        return final

    def replace(self, kind: str, key: str, writer: Callable[[Path], None]) -> Path:
        """Like `write`, but an existing `<kind>/<key>/` is quarantined first (call under the lock)."""
        if self.path(kind, key).exists():
            self.quarantine(kind, key, "was replaced by a retraining that did not reproduce it")
        return self.write(kind, key, writer)

    def add_file(self, kind: str, key: str, name: str, writer: Callable[[Path], None]) -> Path:
        """Add one file to an existing entry (e.g. a further pruned mask), atomically, and add it to the entry's
        manifest (the other files keep the checksums they were written with); never replaces a file (call under
        the lock)."""
        folder = self.path(kind, key)
        target = folder / name
        if target.exists():
            return target
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        os.close(fd)
        try:
            with _disk_full_is_an_error(self.root):
                writer(Path(tmp))
                files = json.loads((folder / MANIFEST).read_text())["files"] | {name: sha256(Path(tmp))}
                os.replace(tmp, target)
                write_manifest(folder, files)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if self.remote is not None:
            self.remote.push(kind, key, folder, [name])
        return target

    @staticmethod
    def _mkdir(path: Path) -> Path:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise MteError(f"result store: {path} is in the way of a folder (a file?)") from None
        except PermissionError:
            raise MteError(f"result store: no permission to create {path}") from None
        return path


def _drop_unlisted(folder: Path) -> None:
    """Remove the files a fetched entry's manifest does not list: nodes add files to a shared entry concurrently,
    so the remote folder may hold one that another node's manifest, uploaded last, does not vouch for."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        listed = json.loads((folder / MANIFEST).read_text())["files"]
        for path in folder.iterdir():
            if path.is_file() and path.name != MANIFEST and path.name not in listed:
                path.unlink()


@contextlib.contextmanager
def _disk_full_is_an_error(root: Path) -> Iterator[None]:
    """A full disk is the user's to fix: one line. Writers raise OSError, or their own error types that say it
    (safetensors: "No space left on device (os error 28)")."""
    try:
        yield
    except Exception as e:
        full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
        if full or "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            raise MteError(f"no space left on the device of the result store {root}: nothing half-written was "
                           "kept; free space and run again") from None
        raise
