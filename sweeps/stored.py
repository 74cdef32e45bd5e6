"""A result store read as sweeps, without MLflow: what `mte report --store` reports and `mte import` records.

A store's finished seeds (`runs/<key>/`, see `mte.results`) hold their whole resolved spec and data fingerprint,
so each names its sweep as `SweepPlan.sweep_hash` does (the shared hyperparameters and data, not the method or
seed) and its unit as `SweepPlan.unit_hash` does (what a sweep's MLflow run is keyed by). A store can hold
several sweeps (other hyperparameters, a τ search's holdout trials); one is chosen by (a prefix of) its hash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mte.errors import MteError, first_line
from mte.methods import order as method_order
from mte.results import SeedResult
from mte.store import damage
from sweeps.plan import SweepPlan, Unit

log = logging.getLogger("mte.store")


@dataclass
class StoredSweep:
    """One sweep's seeds in a store: per unit hash, its result and its folder (ordered by method, then seed)."""

    plan: SweepPlan
    results: dict[str, SeedResult] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)

    @property
    def sweep_hash(self) -> str:
        return self.plan.sweep_hash

    def describe(self) -> str:
        base = self.plan.base
        return (f"{self.sweep_hash} ({base.data.task}, {base.model.model}, {', '.join(self.plan.methods)}; "
                f"{len(self.results)} seed results)")


def _sweep_of(result: SeedResult) -> SweepPlan:
    return SweepPlan(result.spec, (), 1, None, result.data_fingerprint, sizes=dict(result.data_sizes))


def stored_sweeps(root: Path) -> list[StoredSweep]:
    """Every sweep with a finished seed in the store at `root`, the most recently written first. A damaged entry
    is left out with a warning (the store heals it when a sweep needs it)."""
    runs = root / "runs"
    if not root.is_dir():
        raise MteError(f"--store {root}: no such folder")
    if not runs.is_dir():
        raise MteError(f"--store {root}: not a result store with finished seeds (no runs/ folder)")
    sweeps: dict[str, StoredSweep] = {}
    newest: dict[str, float] = {}
    folders = sorted((f for f in runs.iterdir() if f.is_dir() and not f.name.startswith(".")),
                     key=lambda f: f.stat().st_mtime)
    for folder in folders:
        problem = damage(folder)
        try:
            result = SeedResult.load(folder) if problem is None else None
        except (OSError, ValueError, KeyError, TypeError, MteError) as e:
            problem = f"does not load ({first_line(e)})"
            result = None
        if result is None:
            log.warning("store entry %s %s; left out", folder, problem)
            continue
        plan = _sweep_of(result)
        found = sweeps.setdefault(plan.sweep_hash, StoredSweep(plan))
        unit_hash = result.spec.key({"data": result.data_fingerprint})
        found.results[unit_hash], found.folders[unit_hash] = result, folder  # a later entry of one unit wins
        newest[plan.sweep_hash] = folder.stat().st_mtime
    for s in sweeps.values():
        order = {m: i for i, m in enumerate(method_order({r.spec.method.method for r in s.results.values()}))}
        keys = sorted(s.results, key=lambda k: (order[s.results[k].spec.method.method], s.results[k].spec.seed))
        s.results = {k: s.results[k] for k in keys}
        s.folders = {k: s.folders[k] for k in keys}
        methods = tuple(dict.fromkeys(r.spec.method.method for r in s.results.values()))
        seeds = max(r.spec.seed for r in s.results.values()) + 1
        s.plan = SweepPlan(s.plan.base, methods, seeds, None, s.plan.fingerprint, sizes=s.plan.sizes)
    return sorted(sweeps.values(), key=lambda s: -newest[s.sweep_hash])


def stored_sweep(root: Path, sweep: str | None = None) -> StoredSweep:
    """The store's one sweep, or the one whose hash starts with `sweep`; one line listing them otherwise."""
    found = stored_sweeps(root)
    if not found:
        raise MteError(f"--store {root} holds no finished seed")
    chosen = [s for s in found if sweep is None or s.sweep_hash.startswith(sweep)]
    if len(chosen) == 1:
        return chosen[0]
    listed = "; ".join(s.describe() for s in (chosen or found))
    what = f"no sweep {sweep!r}" if not chosen else f"{len(chosen)} sweeps"
    raise MteError(f"--store {root} holds {what}: choose one with --sweep HASH (a prefix is enough): {listed}")


def missing(s: StoredSweep) -> list[Unit]:
    """The units of the sweep's methods × seeds 0..max that the store lacks."""
    have = {(r.spec.method.method, r.spec.seed) for r in s.results.values()}
    return [u for u in s.plan.units if (u.method, u.seed) not in have]
