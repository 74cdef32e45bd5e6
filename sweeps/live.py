"""The terminal view of a running sweep: done / running / failed / pending units with an ETA.

It runs in the driver and sees every trial's progress events: as a Ray Tune callback (`sweeps.tune_view`,
its `on_trial_*` hooks) or fed by the local executor (`sweeps.local`, its `event`/`retry`/`failed`); a rich
`Live` redraws it. Finished and failed units are also printed as lines, which is all a non-terminal
(a log file, CI) gets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sweeps.plan import Unit

IGNORED_METRICS = ("train_loss",)


def error_line(error: Any) -> str:
    """The most telling line of a trial's error (Ray wraps the original exception in a traceback); an MteError's
    message is written for the user and needs no class name."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("mte.errors.MteError: ") if lines else type(error).__name__


def trial_error(trial: Any) -> str:
    """A failed trial's reason in one line: its exception, else the last line of its error file, else what Ray
    knows (a worker that died leaves no exception)."""
    error = trial.get_error()
    if error is not None:
        return error_line(error)
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    return error_line(text) if text.strip() else "its worker process died (no exception was recorded)"


class SweepView:
    def __init__(self, units: list[Unit], done: set[Unit], trials: list[dict[str, Any]],
                 fine_tunes: dict[Unit, int], console: Console, title: str):
        self.status = {u: "done" if u in done else "pending" for u in units}
        self.fine_tunes = fine_tunes  # per unit, from its method's plan
        self.completed = {u: self.fine_tunes[u] if u in done else 0 for u in units}
        self.current: dict[Unit, str] = {}
        self.nodes: dict[Unit, str] = {}  # the node (host) running a unit
        self.started: dict[Unit, float] = {}
        self.errors: dict[str, str] = {}  # trial name → error line and where its traceback is
        self.trial_units = {t["name"]: [Unit(t["method"], s) for s in t["todo"]] for t in trials}
        self.console, self.title = console, title
        self.t0 = time.monotonic()
        self.base_completed = sum(self.completed.values())
        self.live: Live | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment state; the terminal handles stay behind."""
        return self.__dict__ | {"console": None, "live": None}

    # ---- Tune callback -------------------------------------------------------------------------------
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.event(trial.config["trial"]["method"], result)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.retry(trial.config["trial"]["name"], trial_error(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        line = trial_error(trial)
        self.failed(trial.config["trial"]["name"], line,
                    f"{line} (traceback: {trial.error_file})" if trial.error_file else line)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended(trial.config["trial"]["name"])

    # ---- progress, from whichever executor runs the trials ---------------------------------------------
    def event(self, method: str, result: dict) -> None:
        """A trial's progress event (start, fine_tune, done) about one seed of `method`."""
        event = result.get("event")
        if event is None:
            return
        unit = Unit(method, int(result["seed"]))
        if unit not in self.status:
            return  # an earlier chain seed that only supplies its mask
        if event == "start":
            self.status[unit] = "running"
            self.started[unit] = time.monotonic()
            self.current[unit] = "loading"
            self.nodes[unit] = str(result.get("node") or "")
        elif event == "fine_tune":
            self.completed[unit] = int(result["index"])
            self.current[unit] = str(result["what"])
        elif event == "done":
            self.status[unit] = "done"
            self.completed[unit] = self.fine_tunes[unit]
            metrics = "  ".join(f"{k} {v:.4f}" for k, v in (result.get("metrics") or {}).items()
                                if k not in IGNORED_METRICS)
            took = time.monotonic() - self.started.get(unit, time.monotonic())
            reused = " (reused)" if result.get("reused") else ""
            node = f"  on {self.nodes[unit]}" if self.nodes.get(unit) else ""
            self._print(f"[green]done[/]    {unit.name:<16} {metrics}  sparsity {result['sparsity']:.1%}  "
                        f"{took:.0f} s{reused}{node}")

    def retry(self, name: str, line: str) -> None:
        self._print(f"[yellow]retry[/]   {name:<16} {line}")
        for u in self._open_units(name):
            self.status[u] = "pending"

    def failed(self, name: str, line: str, error: str | None = None) -> None:
        """Trial `name` failed for good: `line` is shown, `error` (default: the line) kept for the summary."""
        self._print(f"[red]failed[/]  {name:<16} {line}")
        self.errors[name] = error or line
        for u in self._open_units(name):
            self.status[u] = "failed"

    def ended(self, name: str) -> None:
        for u in self._open_units(name):  # a trial that ended without reporting its seeds
            self.status[u] = "failed"

    def _open_units(self, name: str) -> list[Unit]:
        return [u for u in self.trial_units.get(name, []) if self.status.get(u) not in ("done", None)]

    # ---- rendering -----------------------------------------------------------------------------------
    def __enter__(self) -> SweepView:
        self.live = Live(get_renderable=self.render, console=self.console, refresh_per_second=1,
                         redirect_stdout=True, redirect_stderr=True)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None
            if not self.console.is_terminal:
                self.console.line()  # a non-terminal gets the last frame without its line end

    def _print(self, markup: str) -> None:
        """One line per event, however narrow the terminal: a log (or `grep done`) reads each line whole."""
        (self.live.console if self.live else self.console).print(markup, highlight=False, soft_wrap=True)

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "running": 0, "failed": 0, "pending": 0}
        for s in self.status.values():
            out[s] += 1
        return out

    def eta_s(self) -> float | None:
        """Remaining fine-tunes at the rate fine-tunes have completed so far in this sweep."""
        elapsed = time.monotonic() - self.t0
        progress = sum(self.completed.values()) - self.base_completed
        remaining = sum(self.fine_tunes[u] - self.completed[u] for u, s in self.status.items()
                        if s in ("running", "pending"))
        if remaining == 0:
            return 0.0
        return remaining * elapsed / progress if progress > 0 else None

    def render(self) -> Group:
        c = self.counts()
        eta = self.eta_s()
        eta_text = "–" if eta is None else _clock(eta)
        head = Text.from_markup(
            f"[bold]{self.title}[/]  [green]done {c['done']}[/]  [cyan]running {c['running']}[/]  "
            f"[red]failed {c['failed']}[/]  pending {c['pending']}  "
            f"elapsed {_clock(time.monotonic() - self.t0)}  ETA {eta_text}")
        running = [u for u, s in self.status.items() if s == "running"]
        if not running:
            return Group(head)
        table = Table(box=None, pad_edge=False)
        for col in ("running", "node", "fine-tune", "done", "time"):
            table.add_column(col)
        now = time.monotonic()
        for u in running:
            table.add_row(u.name, self.nodes.get(u, ""), self.current.get(u, ""),
                          f"{self.completed[u]}/{self.fine_tunes[u]}", _clock(now - self.started.get(u, now)))
        return Group(head, table)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
