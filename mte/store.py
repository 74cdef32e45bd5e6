"""A folder of results keyed by hyperparameter hash: write once, atomically; read many times.

`<root>/<kind>/<key>/` holds one result. Writers build it in a temporary sibling and rename it into place,
so a crash never leaves a half-written result and nothing stored is ever overwritten. A per-key file lock
makes concurrent processes asking for the same work wait for one another instead of doing it twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

QUARANTINE = ".quarantine"  # entries moved aside (replaced or damaged), never deleted


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_dir()

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{kind}-{key}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def write(self, kind: str, key: str, writer: Callable[[Path], None]) -> Path:
        """Create `<kind>/<key>/` from `writer(tmpdir)`; a no-op if it already exists."""
        final = self.path(kind, key)
        if final.exists():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            writer(tmp)
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def replace(self, kind: str, key: str, writer: Callable[[Path], None]) -> Path:
        """Like `write`, but an existing `<kind>/<key>/` is moved to `.quarantine/` first (call under the lock)."""
        final = self.path(kind, key)
        if final.exists():
            aside = self.root / QUARANTINE / kind
            aside.mkdir(parents=True, exist_ok=True)
            os.rename(final, Path(tempfile.mkdtemp(prefix=f"{key}.", dir=aside)) / key)
        return self.write(kind, key, writer)

    def add_file(self, kind: str, key: str, name: str, writer: Callable[[Path], None]) -> Path:
        """Add one file to an existing result (e.g. a further pruned mask), atomically; never replaces one."""
        target = self.path(kind, key) / name
        if target.exists():
            return target
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=target.parent)
        os.close(fd)
        try:
            writer(Path(tmp))
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target
