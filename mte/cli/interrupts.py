"""Ctrl-C that is not lost. Python turns SIGINT into a KeyboardInterrupt wherever the main thread is, and
swallows one raised inside a callback (e.g. an import lock's weakref callback while a module loads: "Exception
ignored in … KeyboardInterrupt"), after which a command would run on as if never interrupted. So every SIGINT is
recorded as well, and a command checks the record before its long work starts (`check`; a sweep again before its
trials start: `sweeps.session.INTERRUPTED`)."""

from __future__ import annotations

import signal
import sys

INTERRUPTS: list[int] = []  # SIGINTs this process received


def record() -> None:
    """Ctrl-C raises KeyboardInterrupt, as by default, and is recorded; left alone where SIGINT is ignored (a
    background job) or handled by someone else already."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return

    def on_int(signum: int, frame: object) -> None:
        INTERRUPTS.append(signum)
        if session := sys.modules.get("sweeps.session"):
            session.INTERRUPTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_int)


def check() -> None:
    """Stop here (KeyboardInterrupt) if a Ctrl-C came and its KeyboardInterrupt was swallowed."""
    if INTERRUPTS:
        raise KeyboardInterrupt
