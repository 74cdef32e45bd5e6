"""One seed of any method: the IMP loop (fine-tune → prune → rewind, then train the ticket) or a dense run.

Every fine-tune is stored under a hash of what determines it: the seed's hyperparameters, the data, its
mask, its regulariser and its training subset. So identical work is shared: BASELINE seed s *is* round 0
of BASE-LT seed s, and ACTIVE-LT's first seed *is* BASE-LT's. A finished seed is stored under
`RunSpec.key`; asking again loads it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mte import data as data_mod
from mte.errors import MteError
from mte.finetunes import FineTuneRunner
from mte.hparams import MethodHparams, RunSpec
from mte.masks import Mask
from mte.models import check_model
from mte.pruning import active_coefficients, random_coefficients, round_targets
from mte.results import TEST_LOGITS, FineTuneRecord, SeedResult, load_array, save_array
from mte.store import Store
from mte.training import Regulariser, StepCallback
from mte.workspace import Workspace, open_workspace

# Called before each fine-tune with (index, count, description); lets a CLI label its progress bars.
FineTuneCallback = Callable[[int, int, str], None]


def check_inputs(spec: RunSpec, data_dir: str | Path | None) -> dict[str, int]:
    """What a trial would find wrong with its inputs, found before anything starts: every split readable by the
    reader trials use (labels in the task's label set), the model's configuration and tokenizer loadable.
    Returns the examples per split a trial will see (train, dev, test; dev is the train holdout when tuning)."""
    splits = data_mod.load_splits(spec.task, data_mod.resolve_data_dir(data_dir), spec.data)
    check_model(spec.model)
    sizes = {k: len(v) for k, v in splits.items() if v is not None}
    if spec.data.holdout > 0:
        keep, held = data_mod.holdout_split(sizes["train"], spec.data.holdout)
        sizes = {"train": len(keep), "dev": len(held)}
    return sizes


@dataclass
class RoundEvent:
    """One finished (or reused) fine-tune of a seed, as `seed_rounds` yields it."""

    index: int  # 0-based; the last one is the ticket (or the only fine-tune of a dense method)
    count: int
    record: FineTuneRecord
    dev_logits: np.ndarray | None  # None where the stored fine-tune's logits cannot be read
    result: SeedResult | None = None  # on the last event: the seed's result, already stored

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


def run_seed(
    spec: RunSpec,
    store: Store,
    data_dir: str | Path | None = None,
    prior_masks: Sequence[Mask] = (),
    on_step: StepCallback | None = None,
    on_fine_tune: FineTuneCallback | None = None,
    test: bool = True,
    epoch_curves: bool = False,
) -> SeedResult:
    """Train (or load) one seed of `spec.method`; a chain method (ACTIVE-LT) takes the earlier seeds' final masks.
    `test=False` leaves the test split unevaluated (a later call that wants it adds it to the stored result);
    `epoch_curves` evaluates dev after every epoch of the fine-tunes it trains, not only after the last."""
    result = None
    for event in seed_rounds(spec, store, data_dir, prior_masks, on_step, on_fine_tune, test, epoch_curves):
        result = event.result
    assert result is not None, "the last event carries the result"
    return result


def seed_rounds(
    spec: RunSpec,
    store: Store,
    data_dir: str | Path | None = None,
    prior_masks: Sequence[Mask] = (),
    on_step: StepCallback | None = None,
    on_fine_tune: FineTuneCallback | None = None,
    test: bool = True,
    epoch_curves: bool = False,
) -> Iterator[RoundEvent]:
    """`run_seed`, one fine-tune at a time: an event after each; the last one carries the stored SeedResult.

    Lets a caller interleave several seeds round by round (τ tuning reports after every IMP round). No lock is
    held while the generator waits at a yield, so a consumer that stops early (a τ sample the scheduler stopped)
    leaves nothing locked; each fine-tune is locked while it is loaded or trained, so another process asking for
    the same seed meanwhile shares the work instead of repeating it.
    """
    start = time.perf_counter()
    spec = spec.resolved()
    data_dir = data_mod.resolve_data_dir(data_dir)
    fingerprint = data_mod.data_fingerprint(spec.task, data_dir)
    method = spec.method.declared
    if not method.chain and prior_masks:
        raise MteError(f"prior masks are only used by methods that chain seeds, not by {method.name}")
    priors = sorted(m.digest() for m in prior_masks)
    key = spec.key({"data": fingerprint, "priors": priors} if priors else {"data": fingerprint})
    with store.lock("runs", key):
        found = store.load("runs", key, SeedResult.load)
    if found is not None and not _lacks_test(found, test):
        yield from _stored_rounds(store, found, start)
        return
    ws = open_workspace(spec, data_dir, store)
    for m in prior_masks:
        m.check_compatible(ws.prunable, f"{method.name} prior mask")
    runner = FineTuneRunner(spec, ws, store, {"spec": spec.common_key_payload(), "data": fingerprint}, on_step,
                            test, epoch_curves)
    plan = method.fine_tunes(SeedContext(spec.method, spec.seed, list(prior_masks), priors, ws))
    mask = Mask.dense(ws.prunable, spec.model.model)
    rounds: list[FineTuneRecord] = []
    head = None  # the trained head the next fine-tune starts from (a step that keeps its head), with its key
    for i, step in enumerate(plan):
        if on_fine_tune:
            on_fine_tune(i, len(plan), step.describe(mask))
        done = runner.fine_tune(mask, step, head)
        rounds.append(done.record)
        logits, head = done.logits, done.head
        event = RoundEvent(i, len(plan), done.record, logits["dev"])
        if not event.last:
            mask = done.mask
            yield event
    result = SeedResult(key=key, spec=spec, mask=mask, dev_logits=logits["dev"],
                        dev_labels=ws.data.dev.labels.numpy(), test_logits=logits.get("test"), rounds=rounds,
                        data_fingerprint=fingerprint, prior_masks=priors, data_sizes=ws.data.sizes,
                        model_params=sum(p.numel() for p in ws.net.parameters()))
    with store.lock("runs", key):
        # Read again: another process may have stored this seed (from the same stored fine-tunes) meanwhile.
        found = store.load("runs", key, SeedResult.load)
        if found is None:
            store.write("runs", key, result.save)
        elif _lacks_test(found, test):
            _add_test_logits(store, found, result)
    result.elapsed_s = time.perf_counter() - start
    yield dataclasses.replace(event, result=result)


def _lacks_test(found: SeedResult, test: bool) -> bool:
    """Stored without the test logits asked for (`mte run` without --test): replaying the plan adds them."""
    return test and found.test_logits is None and "test" in found.data_sizes


def _add_test_logits(store: Store, stored: SeedResult, result: SeedResult) -> None:
    """The stored seed result gains the test logits of its replayed plan (replaced whole if the replay's dev logits
    differ: logits of two trainings are never paired). Call under the result's lock."""
    if np.array_equal(stored.dev_logits, result.dev_logits) and result.test_logits is not None:
        store.add_file("runs", stored.key, TEST_LOGITS, lambda path: save_array(path, result.test_logits))
    else:
        store.replace("runs", stored.key, result.save)


def _stored_rounds(store: Store, result: SeedResult, start: float) -> Iterator[RoundEvent]:
    result.loaded = True
    for i, record in enumerate(result.rounds):
        last = i == len(result.rounds) - 1
        if last:
            logits = result.dev_logits
            result.elapsed_s = time.perf_counter() - start
        else:
            with store.lock("finetunes", record.key):
                logits = store.load("finetunes", record.key, _dev_logits)
        yield RoundEvent(i, len(result.rounds), record, logits, result if last else None)


def _dev_logits(folder: Path) -> np.ndarray | None:
    path = folder / "dev_logits.npy"
    return load_array(path) if path.exists() else None


@dataclass
class SeedContext:
    """What a method's plan asks of the seed it trains (`mte.methods.Seed`), with the model at hand."""

    hp: MethodHparams
    seed: int
    prior_masks: list[Mask]
    prior_digests: list[str]
    ws: Workspace

    def param(self, name: str) -> Any:
        return self.hp.param(self.hp.declared, name)

    def targets(self) -> list[int]:
        total = sum(p.numel() for p in self.ws.prunable.values())
        return round_targets(total, self.hp.sparsity, self.hp.rounds)

    def regulariser(self, tau: float, coefficients: str | dict[str, Any]) -> Regulariser:
        if coefficients == "random":
            shapes = {n: p.shape for n, p in self.ws.prunable.items()}
            return Regulariser(tau, random_coefficients(shapes, self.hp.sparsity, self.seed))
        if coefficients == "active":
            if not self.prior_masks:
                raise MteError("an 'active' regulariser needs the earlier seeds' masks (a chain method)")
            return Regulariser(tau, active_coefficients(self.prior_masks))
        if isinstance(coefficients, dict):
            return Regulariser(tau, coefficients)
        raise MteError(f"unknown regulariser coefficients {coefficients!r}: 'random', 'active' or a dict of tensors")


def active_chain(spec: RunSpec, store: Store, seeds: Sequence[int], data_dir: str | Path | None = None,
                 on_seed: Callable[[int], None] | None = None, **kwargs: Any) -> list[SeedResult]:
    """A chain method (ACTIVE-LT) over `seeds` in order: each seed is given the final masks of those before it."""
    results: list[SeedResult] = []
    for seed in seeds:
        if on_seed:
            on_seed(seed)
        results.append(run_seed(dataclasses.replace(spec, seed=seed), store, data_dir,
                                prior_masks=[r.mask for r in results], **kwargs))
    return results
