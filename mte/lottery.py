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
import torch
from torch import nn

from mte import data as data_mod
from mte.errors import MteError
from mte.hparams import LOTTERY_METHODS, RunSpec, digest
from mte.masks import Mask
from mte.models import Initial, check_model, head_parameters, load_model, load_tokenizer, prunable_parameters
from mte.pruning import active_coefficients, magnitude_prune, random_coefficients, round_targets
from mte.results import (
    HEAD_FILE,
    TEST_LOGITS,
    FineTuneRecord,
    SeedResult,
    load_array,
    load_fine_tune,
    load_head,
    pruned_mask_name,
    save_array,
    save_fine_tune,
    save_head,
)
from mte.store import Store
from mte.training import Regulariser, StepCallback, fine_tune

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


def load_data(spec: RunSpec, data_dir: Path | None, store: Store | None = None) -> data_mod.TaskData:
    """The seed's tokenised splits (the train holdout as dev when `spec.data.holdout` is set). With a store, the
    tokenisation is cached in it (`data/<key>`), so the trials of a sweep tokenise each dataset once; the cache
    stays on this node (no upload: tokenising is cheaper than a transfer)."""
    tokenizer = load_tokenizer(spec.model)
    if store is None:
        tokens = data_mod.tokenize_splits(spec.task, data_dir, spec.data, tokenizer)
    else:
        key = data_mod.tokens_key(spec.task, data_mod.data_fingerprint(spec.task, data_dir), spec.data, tokenizer)
        local = Store(store.root)
        with local.lock("data", key):
            tokens = local.load("data", key, data_mod.TokenizedSplits.load)
            if tokens is None:
                tokens = data_mod.tokenize_splits(spec.task, data_dir, spec.data, tokenizer)
                local.write("data", key, tokens.save)
    return data_mod.task_data(spec.task, tokens, spec.data)


@dataclass
class Workspace:
    """What all fine-tunes of one seed share: tokenised data, the model, and the point to rewind to (None for a
    one-fine-tune method: its model is trained once, as loaded, and a copy of the weights would only cost memory)."""

    data: data_mod.TaskData
    net: nn.Module
    initial: Initial | None
    prunable: dict[str, nn.Parameter]
    pristine: bool = True  # the model holds its initial weights (nothing trained yet)

    def rewind(self, head: dict[str, torch.Tensor] | None = None) -> None:
        """The model back at its initial weights (`head`: a trained head instead of the initial one)."""
        if self.initial is not None:
            self.initial.rewind(self.net, head)
        elif not self.pristine or head:
            raise RuntimeError("this workspace kept no initial weights to rewind to (a one-fine-tune method)")
        self.pristine = False


def open_workspace(spec: RunSpec, data_dir: Path | None, store: Store | None = None) -> Workspace:
    data = load_data(spec, data_dir, store)
    if spec.method.method == "bagging":
        subset = data_mod.bagging_subset(len(data.train), spec.method.bagging_fraction, spec.seed)
        data = dataclasses.replace(data, train=data.train.subset(subset))
    net = load_model(spec.model, data.task, spec.seed)
    initial = Initial.capture(net) if spec.method.method in LOTTERY_METHODS else None
    return Workspace(data, net, initial, prunable_parameters(net))


@dataclass
class RoundEvent:
    """One finished (or reused) fine-tune of a seed, as `seed_rounds` yields it."""

    index: int  # 0-based; the last one is the ticket (or the only fine-tune of a dense method)
    count: int
    record: FineTuneRecord
    dev_logits: np.ndarray | None  # None only where an old result no longer has it
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
    """Train (or load) one seed of `spec.method`; ACTIVE-LT takes the earlier seeds' final masks. `test=False`
    leaves the test split unevaluated (a later call that wants it adds it to the stored result); `epoch_curves`
    evaluates dev after every epoch of the fine-tunes it trains, not only after the last."""
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

    Lets a caller interleave several seeds round by round (τ tuning reports after every IMP round).
    """
    start = time.perf_counter()
    spec = spec.resolved()
    data_dir = data_mod.resolve_data_dir(data_dir)
    fingerprint = data_mod.data_fingerprint(spec.task, data_dir)
    if spec.method.method != "active-lt" and prior_masks:
        raise MteError("prior masks are only used by active-lt")
    priors = sorted(m.digest() for m in prior_masks)
    key = spec.key({"data": fingerprint, "priors": priors} if priors else {"data": fingerprint})
    with store.lock("runs", key):
        found = store.load("runs", key, SeedResult.load)
        # Stored without its test logits (`mte run` without --test): replay the plan, which adds them.
        lacks_test = found is not None and test and found.test_logits is None and "test" in found.data_sizes
        if found is not None and not lacks_test:
            stored = list(_stored_rounds(store, found, start))
        else:
            stored = None
            ws = open_workspace(spec, data_dir, store)
            for m in prior_masks:
                m.check_compatible(ws.prunable, "active-lt prior mask")
            runner = _SeedRunner(spec, ws, store, {"spec": spec.common_key_payload(), "data": fingerprint}, on_step,
                                 test, epoch_curves)
            plan = _imp_plan(spec, ws, prior_masks, priors) if spec.method.method in LOTTERY_METHODS \
                else _dense_plan(spec)
            mask = Mask.dense(ws.prunable, spec.model.model)
            targets = round_targets(mask.total, spec.method.sparsity, spec.method.rounds)
            rounds: list[FineTuneRecord] = []
            keeps_head = spec.method.method in LOTTERY_METHODS and not spec.method.rewind_head
            head = None  # the trained head the next fine-tune starts from (--no-rewind-head), with its key
            for i, step in enumerate(plan):
                if on_fine_tune:
                    on_fine_tune(i, len(plan), step.describe(mask))
                prune_to = targets[i] if step.prune else None
                done = runner.fine_tune(mask, step, prune_to, head, want_head=keeps_head and step.prune)
                rounds.append(done.record)
                logits, head = done.logits, done.head
                event = RoundEvent(i, len(plan), done.record, logits["dev"])
                if not event.last:
                    mask = done.mask
                    yield event
            result = SeedResult(key=key, spec=spec, mask=mask, dev_logits=logits["dev"],
                                dev_labels=ws.data.dev.labels.numpy(), test_logits=logits.get("test"),
                                rounds=rounds, data_fingerprint=fingerprint, prior_masks=priors,
                                data_sizes=ws.data.sizes)
            if lacks_test:
                _add_test_logits(store, found, result)
            else:
                store.write("runs", key, result.save)
            result.elapsed_s = time.perf_counter() - start
    # Outside the lock: a caller may hold on to the last event (to log or report it) without blocking another
    # process that asks for this seed.
    if stored is not None:
        yield from stored
    else:
        yield dataclasses.replace(event, result=result)


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
        logits = result.dev_logits if last else store.load("finetunes", record.key, _dev_logits)
        if last:
            result.elapsed_s = time.perf_counter() - start
        yield RoundEvent(i, len(result.rounds), record, logits, result if last else None)


def _dev_logits(folder: Path) -> np.ndarray | None:
    path = folder / "dev_logits.npy"
    return load_array(path) if path.exists() else None


@dataclass(frozen=True)
class _Step:
    """One fine-tune of a seed's plan: its regulariser, its training subset, and whether it prunes after."""

    name: str  # may say "{sparsity}": the sparsity of the mask it trains under
    prune: bool
    reg_id: Any = None
    reg: Regulariser | None = None
    subset: Any = None

    def describe(self, mask: Mask) -> str:
        return self.name.format(sparsity=f"{mask.sparsity:.0%}")


def _imp_plan(spec: RunSpec, ws: Workspace, prior_masks: Sequence[Mask], priors: list[str]) -> list[_Step]:
    """IMP: `rounds` regularised pruning fine-tunes, then the ticket (never regularised)."""
    reg_id, reg = _regulariser(spec, ws, prior_masks, priors)
    n = spec.method.rounds
    rounds = [_Step(f"round {r + 1}/{n} ({{sparsity}} pruned)", True, reg_id, reg) for r in range(n)]
    return [*rounds, _Step("ticket ({sparsity} pruned)", False)]


def _dense_plan(spec: RunSpec) -> list[_Step]:
    """One dense fine-tune. BASELINE also stores the first IMP round's mask, so BASE-LT reuses it whole."""
    method = spec.method.method
    if method == "bagging":
        return [_Step(method, False, subset={"bagging": spec.method.bagging_fraction})]
    return [_Step(method, True)]


def _regulariser(spec: RunSpec, ws: Workspace, prior_masks: Sequence[Mask],
                 priors: list[str]) -> tuple[Any, Regulariser | None]:
    """The L1 regulariser of the pruning fine-tunes and its identity in the fine-tune's hash (None: none)."""
    method, tau = spec.method.method, spec.method.tau
    if method == "random-lt" and tau > 0:
        shapes = {n: p.shape for n, p in ws.prunable.items()}
        coef = random_coefficients(shapes, spec.method.sparsity, spec.seed)
        return {"random": spec.seed, "p0": spec.method.sparsity, "tau": tau}, Regulariser(tau, coef)
    if method == "active-lt" and tau > 0 and prior_masks:
        return {"active": priors, "tau": tau}, Regulariser(tau, active_coefficients(prior_masks))
    return None, None


@dataclass
class _Trained:
    """What one fine-tune leaves for the seed: its record and logits, the mask pruned from its weights (or the mask
    it trained under), and its trained head with the key that names it (None unless asked for)."""

    record: FineTuneRecord
    logits: dict[str, np.ndarray]
    mask: Mask
    head: tuple[str, dict[str, torch.Tensor]] | None = None


class _SeedRunner:
    """Runs one seed's fine-tunes through the store: load if present, else rewind, train, save."""

    def __init__(self, spec: RunSpec, ws: Workspace, store: Store, base: dict, on_step: StepCallback | None,
                 test: bool = True, epoch_curves: bool = False):
        self.spec, self.ws, self.store, self.base, self.on_step = spec, ws, store, base, on_step
        self.test, self.epoch_curves = test, epoch_curves

    def fine_tune(self, mask: Mask, step: _Step, prune_to: int | None,
                  start_head: tuple[str, dict[str, torch.Tensor]] | None, want_head: bool) -> _Trained:
        """One fine-tune from the initial weights under `mask` (with `start_head`'s trained head instead of the
        initial one, if given), then the mask pruned to `prune_to` weights and (`want_head`) its trained head.

        A stored fine-tune lacking a file asked for (a pruned mask for another target, a head) is trained again
        (its weights are not kept); the file is added only if the retrained logits equal the stored ones bit for
        bit, else the folder is replaced whole, so everything in one folder comes from one training.
        """
        dense = mask.kept == mask.total
        payload = {"mask": "dense" if dense else mask.digest(), "reg": step.reg_id, "subset": step.subset}
        if start_head is not None:  # a head kept from the previous round is part of the starting point
            payload["head"] = start_head[0]
        key = digest(self.base | payload)
        # Test logits are read only from a seed's last fine-tune: a ticket, BAGGING's, and the dense unregularised
        # one (BASELINE's, which is also BASE-LT's first round). Rounds that only lead to a mask skip them.
        want_test = self.test and self.ws.data.test is not None and (not step.prune or (dense and step.reg is None))
        needed = ([pruned_mask_name(prune_to)] if prune_to is not None else []) + ([HEAD_FILE] if want_head else []) \
            + ([TEST_LOGITS] if want_test else [])
        def stored(folder: Path) -> tuple[dict[str, np.ndarray], _Trained | None]:
            """The entry's logits, and the whole result unless a file this step needs is not there yet."""
            record, logits = load_fine_tune(folder)
            if not all((folder / n).exists() for n in needed):
                return logits, None
            pruned = Mask.load(folder / needed[0]) if prune_to is not None else mask
            head = (key, load_head(folder / HEAD_FILE)) if want_head else None
            return logits, _Trained(record, logits, pruned, head)

        with self.store.lock("finetunes", key):
            found = self.store.load("finetunes", key, stored)
            if found is not None and found[1] is not None:
                return found[1]
            ws = self.ws
            ws.rewind(start_head[1] if start_head else None)
            out = fine_tune(ws.net, ws.data.task, ws.data.train, ws.data.dev, ws.data.test if want_test else None,
                            self.spec.train,
                            self.spec.seed, ws.data.pad_id, mask=None if dense else mask, reg=step.reg,
                            on_step=self.on_step, epoch_eval=self.epoch_curves)
            record = FineTuneRecord(key, mask.sparsity, step.reg is not None, out.epochs, out.steps, out.wall_s,
                                    loss_trace=out.loss_trace, ran_on=out.ran_on)
            logits = {"dev": out.dev_logits} | ({"test": out.test_logits} if out.test_logits is not None else {})
            new_mask = mask
            if prune_to is not None:
                weights = {n: p.detach().cpu() for n, p in ws.prunable.items()}
                new_mask = magnitude_prune(weights, mask, prune_to - (mask.total - mask.kept))
            head = {n: p.detach().cpu().clone() for n, p in head_parameters(ws.net).items()}
            files = {HEAD_FILE: lambda path: save_head(path, head)}  # a few KB: kept for every fine-tune
            if prune_to is not None:
                files[pruned_mask_name(prune_to)] = new_mask.save

            def write(tmp: Path) -> None:
                save_fine_tune(tmp, record, logits)
                for name, save in files.items():
                    save(tmp / name)

            if found is None:
                self.store.write("finetunes", key, write)
            elif _same(found[0], logits):  # the same training: add what the entry lacks
                for split in logits.keys() - found[0].keys():
                    files[f"{split}_logits.npy"] = lambda path, arr=logits[split]: save_array(path, arr)
                for name, save in files.items():
                    self.store.add_file("finetunes", key, name, save)
            else:
                self.store.replace("finetunes", key, write)
            return _Trained(record, logits, new_mask, (key, head) if want_head else None)


def _same(stored: dict[str, np.ndarray], logits: dict[str, np.ndarray]) -> bool:
    """Whether a retraining reproduced every stored logit bit for bit (it may have computed more splits)."""
    return stored.keys() <= logits.keys() and all(np.array_equal(v, logits[k]) for k, v in stored.items())


def active_chain(spec: RunSpec, store: Store, seeds: Sequence[int], data_dir: str | Path | None = None,
                 on_seed: Callable[[int], None] | None = None, **kwargs: Any) -> list[SeedResult]:
    """ACTIVE-LT over `seeds` in order: each seed's regulariser uses the final masks of those before it."""
    results: list[SeedResult] = []
    for seed in seeds:
        if on_seed:
            on_seed(seed)
        results.append(run_seed(dataclasses.replace(spec, seed=seed), store, data_dir,
                                prior_masks=[r.mask for r in results], **kwargs))
    return results
