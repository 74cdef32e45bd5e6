"""What a sweep runs: units (method, seed), the hashes that name them, and the Ray Tune trials that run them.

A chain method's seed i needs the final masks of the seeds before it (ACTIVE-LT: 0..i−1), so its seeds form one
*chain* trial that runs them in order (logging one MLflow run per seed) and is scheduled first; every other
(method, seed) is an independent trial that fills the remaining slots. The chain is the sweep's inherent critical
path; starting it first keeps it from finishing last, and no slot ever sits waiting on another trial's mask.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mte import data as data_mod
from mte import methods
from mte.hparams import MethodHparams, RunSpec, check_seed_count, digest, non_default
from mte.lottery import check_inputs
from mte.methods import dry
from sweeps.inputs import check_data_files, check_model_files, check_sizes


@dataclass(frozen=True)
class Unit:
    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-s{self.seed}"


@dataclass
class SweepPlan:
    """The shared hyperparameters (`base`, lr resolved), the methods and seeds 0..seeds−1, and the data."""

    base: RunSpec
    methods: tuple[str, ...]
    seeds: int
    data_dir: Path | None
    fingerprint: str
    taus: dict[str, float] = field(default_factory=dict)  # per-method τ (tuned separately); else the base's
    sizes: dict[str, int] = field(default_factory=dict)  # examples per split a trial sees

    @classmethod
    def build(cls, base: RunSpec, methods: tuple[str, ...], seeds: int, data_dir: str | Path | None) -> SweepPlan:
        check_seed_count(seeds)
        for m in methods:  # validate every method's spec before anything is started or recorded
            base.with_method(m).resolved()
        base = base.resolved()
        folder = data_mod.resolve_data_dir(data_dir)
        folder = folder.resolve() if folder is not None else None
        # fail now, not in every trial (a bad file, a missing or damaged model, no internet, too few examples)
        check_data_files(base, folder)
        check_model_files(base)
        sizes = check_inputs(base, folder)
        check_sizes(base, sizes, methods)
        return cls(base, methods, seeds, folder, data_mod.data_fingerprint(base.task, folder), sizes=sizes)

    def with_taus(self, taus: dict[str, float]) -> SweepPlan:
        """τ per regularised method: one value becomes the sweep's τ, different values stay per method."""
        if len(set(taus.values())) == 1:
            return dataclasses.replace(self, base=self.base.with_method(tau=next(iter(taus.values()))).resolved())
        return dataclasses.replace(self, taus=dict(taus))

    def spec(self, unit: Unit) -> RunSpec:
        tau = {"tau": self.taus[unit.method]} if unit.method in self.taus else {}
        return self.base.with_method(unit.method, unit.seed, **tau)

    def unit_hash(self, unit: Unit) -> str:
        """`RunSpec.key` with the data fingerprint: the store key of the seed's result, except for ACTIVE-LT
        seeds > 0, whose store key also covers the prior masks (those follow from the spec and the seed)."""
        return self.spec(unit).key({"data": self.fingerprint})

    @property
    def sweep_hash(self) -> str:
        """Names the sweep: everything shared by its trials, but not the methods or seeds (those can grow)."""
        common = self.base.common_key_payload()
        common.pop("seed")
        method = non_default(self.base.method, tuple(f.name for f in dataclasses.fields(MethodHparams)
                                                      if f.name != "method"))
        payload = {"common": common, "method": method, "data": self.fingerprint}
        return digest(payload | ({"taus": self.taus} if self.taus else {}))

    @property
    def units(self) -> list[Unit]:
        return [Unit(m, s) for m in self.methods for s in range(self.seeds)]

    def fine_tunes(self) -> tuple[int, int]:
        """(distinct, total) fine-tunes of every unit, counted from the methods' plans: the store runs shared work
        once (`mte.lottery`), e.g. BASELINE seed s is round 0 of BASE-LT seed s, and an ACTIVE-LT chain's first
        seed, which has no earlier masks, is BASE-LT's seed."""
        distinct = {i for w in self.work.values() for i in w}
        return len(distinct), sum(len(w) for w in self.work.values())

    @functools.cached_property
    def work(self) -> dict[Unit, list]:
        """Each unit's fine-tunes, one identity each (`mte.methods.dry.identities`), drawn once per plan."""
        out = {}
        for u in self.units:
            spec = self.spec(u)
            out[u] = dry.identities(spec.method.declared, spec.method, u.seed)
        return out

    def trials(self, finished: set[str]) -> list[dict[str, Any]]:
        """Trial descriptions for the units whose hash is not in `finished`: chains first, then the independent
        units, longest first (most fine-tunes), so no slot idles at the end behind one long trial. Units whose
        work a chain's first seed shares come last, where they do not wait on its store lock."""
        out: list[dict[str, Any]] = []
        shared: set = set()
        for name in self.methods:
            method = methods.get(name)
            if not method.chain:
                continue
            chains: dict[int, list[int]] = {}  # chain start → its seeds (one chain, or one per seed group)
            for s in range(self.seeds):
                chains.setdefault(method.chain_seeds(self.base.method, s)[0], []).append(s)
            for start, seeds in chains.items():
                shared.update(self.work[Unit(name, start)])
                todo = [s for s in seeds if self.unit_hash(Unit(name, s)) not in finished]
                if todo:  # runs seeds up to the last missing one; finished ones only supply their masks
                    trial = f"{name}-chain" + (f"-{start}" if len(chains) > 1 else "")
                    out.append(self._trial(trial, name, list(range(start, max(todo) + 1)), todo))
        independent = [u for u in self.units if not methods.get(u.method).chain
                       and self.unit_hash(u) not in finished]
        work = self.work
        uses = collections.Counter(i for w in work.values() for i in set(w))
        independent.sort(key=lambda u: (bool(shared.intersection(work[u])), -len(work[u]),
                                        any(uses[i] > 1 for i in work[u]), self.methods.index(u.method), u.seed))
        out += [self._trial(u.name, u.method, [u.seed], [u.seed]) for u in independent]
        return out

    def _trial(self, name: str, method: str, seeds: list[int], todo: list[int]) -> dict[str, Any]:
        units = [Unit(method, s) for s in seeds]
        return {"name": name, "method": method, "seeds": seeds, "todo": todo,
                "hashes": {str(u.seed): self.unit_hash(u) for u in units}}
