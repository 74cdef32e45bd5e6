"""One seed of any method: the IMP loop (fine-tune → prune → rewind, then train the ticket) or a dense run.

Every fine-tune is stored under a hash of what determines it: the seed's hyperparameters, the data, its
mask, its regulariser and its training subset. So identical work is shared: BASELINE seed s *is* round 0
of BASE-LT seed s, and ACTIVE-LT's first seed *is* BASE-LT's. A finished seed is stored under
`RunSpec.key`; asking again loads it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mte import data as data_mod
from mte.errors import MteError
from mte.hparams import LOTTERY_METHODS, RunSpec, digest
from mte.masks import Mask
from mte.models import Initial, load_model, load_tokenizer, prunable_parameters, resolve_lr
from mte.pruning import active_coefficients, magnitude_prune, random_coefficients, round_targets
from mte.results import FineTuneRecord, SeedResult, load_array, save_array
from mte.store import Store
from mte.tasks import TaskSpec, get_task
from mte.training import Regulariser, StepCallback, fine_tune

# Called before each fine-tune with (index, count, description); lets a CLI label its progress bars.
FineTuneCallback = Callable[[int, int, str], None]


@dataclass
class Workspace:
    """What all fine-tunes of one seed share: tokenised data, the model, and the point to rewind to."""

    task: TaskSpec
    train: data_mod.TokenizedSplit
    dev: data_mod.TokenizedSplit
    test: data_mod.TokenizedSplit | None
    pad_id: int
    net: nn.Module
    initial: Initial
    prunable: dict[str, nn.Parameter]


def prepare_spec(spec: RunSpec) -> RunSpec:
    """Validate and resolve model-dependent defaults (the learning rate) so the hash is explicit."""
    spec.validate()
    return dataclasses.replace(spec, train=resolve_lr(spec.model, spec.train))


def load_data(spec: RunSpec, data_dir: Path | None) -> tuple[data_mod.TokenizedSplit, ...]:
    task = get_task(spec.data.task)
    tokenizer = load_tokenizer(spec.model)
    splits = []
    for split in ("train", "dev", "test"):
        raw = data_mod.load_split(task, data_dir, split)
        if raw is None:
            splits.append(None)
            continue
        limit = spec.data.train_limit if split == "train" else spec.data.eval_limit
        if limit is not None and limit < len(raw):  # cut before tokenising: quick runs skip the rest
            labels = None if raw.labels is None else raw.labels[:limit]
            raw = data_mod.RawSplit(tuple(t[:limit] for t in raw.texts), labels, raw.source)
        splits.append(data_mod.tokenize(raw, tokenizer, spec.data.max_length))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if spec.data.holdout > 0:  # tuning: held-out train examples stand in for dev; dev and test stay unseen
        keep, held = data_mod.holdout_split(len(splits[0]), spec.data.holdout)
        splits = [splits[0].subset(keep), splits[0].subset(held), None]
    return (*splits, pad)


def open_workspace(spec: RunSpec, data_dir: Path | None) -> Workspace:
    task = get_task(spec.data.task)
    train, dev, test, pad_id = load_data(spec, data_dir)
    if spec.method.method == "bagging":
        train = train.subset(data_mod.bagging_subset(len(train), spec.method.bagging_fraction, spec.seed))
    net = load_model(spec.model, task, spec.seed)
    return Workspace(task, train, dev, test, pad_id, net, Initial.capture(net), prunable_parameters(net))


@dataclass
class RoundEvent:
    """One finished (or reused) fine-tune of a seed, as `seed_rounds` yields it."""

    index: int  # 0-based; the last one is the ticket (or the only fine-tune of a dense method)
    count: int
    record: FineTuneRecord
    dev_logits: np.ndarray | None  # None only where an old result no longer has it


def run_seed(
    spec: RunSpec,
    store: Store,
    data_dir: str | Path | None = None,
    prior_masks: Sequence[Mask] = (),
    on_step: StepCallback | None = None,
    on_fine_tune: FineTuneCallback | None = None,
) -> SeedResult:
    """Train (or load) one seed of `spec.method`; ACTIVE-LT takes the earlier seeds' final masks."""
    rounds = seed_rounds(spec, store, data_dir, prior_masks, on_step, on_fine_tune)
    while True:
        try:
            next(rounds)
        except StopIteration as done:
            return done.value


def seed_rounds(
    spec: RunSpec,
    store: Store,
    data_dir: str | Path | None = None,
    prior_masks: Sequence[Mask] = (),
    on_step: StepCallback | None = None,
    on_fine_tune: FineTuneCallback | None = None,
) -> Generator[RoundEvent, None, SeedResult]:
    """`run_seed`, one fine-tune at a time: yields after each, returns the SeedResult.

    Lets a caller interleave several seeds round by round (τ tuning reports after every IMP round).
    """
    start = time.perf_counter()
    spec = prepare_spec(spec)
    data_dir = data_mod.resolve_data_dir(data_dir)
    task = get_task(spec.data.task)
    fingerprint = data_mod.data_fingerprint(task, data_dir)
    method = spec.method.method
    if method != "active-lt" and prior_masks:
        raise MteError("prior masks are only used by active-lt")
    priors = sorted(m.digest() for m in prior_masks)
    key = spec.key({"data": fingerprint, "priors": priors} if priors else {"data": fingerprint})
    with store.lock("runs", key):
        if store.has("runs", key):
            result = SeedResult.load(store.path("runs", key))
            for i, record in enumerate(result.rounds):
                last = i == len(result.rounds) - 1
                logits = result.dev_logits if last else _stored_dev_logits(store, record.key)
                yield RoundEvent(i, len(result.rounds), record, logits)
            result.loaded = True
            result.elapsed_s = time.perf_counter() - start
            return result
        ws = open_workspace(spec, data_dir)
        for m in prior_masks:
            m.check_compatible(ws.prunable, "active-lt prior mask")
        base = {"spec": spec.common_key_payload(), "data": fingerprint}
        runner = _SeedRunner(spec, ws, store, base, on_step)
        mask = Mask.dense(ws.prunable, spec.model.model)
        targets = round_targets(mask.total, spec.method.sparsity, spec.method.rounds)
        rounds: list[FineTuneRecord] = []
        if method in LOTTERY_METHODS:
            reg_id, reg = _regulariser(spec, ws, prior_masks, priors)
            count = spec.method.rounds + 1
            for r, target in enumerate(targets):
                if on_fine_tune:
                    on_fine_tune(r, count, f"round {r + 1}/{spec.method.rounds} ({mask.sparsity:.0%} pruned)")
                record, logits, mask = runner.fine_tune(mask, reg_id, reg, prune_to=target)
                rounds.append(record)
                yield RoundEvent(r, count, record, logits["dev"])
            if on_fine_tune:
                on_fine_tune(count - 1, count, f"ticket ({mask.sparsity:.0%} pruned)")
            record, logits, _ = runner.fine_tune(mask, None, None)
        else:
            count = 1
            if on_fine_tune:
                on_fine_tune(0, 1, method)
            subset = {"bagging": spec.method.bagging_fraction} if method == "bagging" else None
            # BASELINE also stores the first IMP round's mask, so BASE-LT reuses this fine-tune whole.
            record, logits, _ = runner.fine_tune(mask, None, None, subset=subset,
                                                 prune_to=None if subset else targets[0])
        rounds.append(record)
        yield RoundEvent(count - 1, count, record, logits["dev"])
        result = SeedResult(key=key, spec=spec, mask=mask, dev_logits=logits["dev"],
                            dev_labels=ws.dev.labels.numpy(), test_logits=logits.get("test"), rounds=rounds,
                            data_fingerprint=fingerprint, prior_masks=priors)
        store.write("runs", key, result.save)
        result.elapsed_s = time.perf_counter() - start
        return result


def _stored_dev_logits(store: Store, finetune_key: str) -> np.ndarray | None:
    path = store.path("finetunes", finetune_key) / "dev_logits.npy"
    return load_array(path) if path.exists() else None


def _regulariser(spec: RunSpec, ws: Workspace, prior_masks: Sequence[Mask],
                 priors: list[str]) -> tuple[Any, Regulariser | None]:
    method, tau = spec.method.method, spec.method.tau
    if method == "random-lt" and tau > 0:
        shapes = {n: p.shape for n, p in ws.prunable.items()}
        coef = random_coefficients(shapes, spec.method.sparsity, spec.seed)
        return {"random": spec.seed, "p0": spec.method.sparsity, "tau": tau}, Regulariser(tau, coef)
    if method == "active-lt" and tau > 0 and prior_masks:
        return {"active": priors, "tau": tau}, Regulariser(tau, active_coefficients(prior_masks))
    return None, None


class _SeedRunner:
    """Runs one seed's fine-tunes through the store: load if present, else rewind, train, save."""

    def __init__(self, spec: RunSpec, ws: Workspace, store: Store, base: dict, on_step: StepCallback | None):
        self.spec, self.ws, self.store, self.base, self.on_step = spec, ws, store, base, on_step

    def fine_tune(self, mask: Mask, reg_id: Any, reg: Regulariser | None, subset: Any = None,
                  prune_to: int | None = None) -> tuple[FineTuneRecord, dict[str, np.ndarray], Mask]:
        """Returns the record, the logits, and the mask pruned to `prune_to` weights (or `mask`)."""
        dense = mask.kept == mask.total
        key = digest(self.base | {"mask": "dense" if dense else mask.digest(), "reg": reg_id, "subset": subset})
        pruned_name = f"pruned-{prune_to}.safetensors"
        folder = self.store.path("finetunes", key)
        with self.store.lock("finetunes", key):
            if self.store.has("finetunes", key) and (prune_to is None or (folder / pruned_name).exists()):
                return self._load(folder, pruned_name if prune_to is not None else None, mask)
            ws = self.ws
            ws.initial.rewind(ws.net)
            out = fine_tune(ws.net, ws.task, ws.train, ws.dev, ws.test, self.spec.train, self.spec.seed,
                            ws.pad_id, mask=None if dense else mask, reg=reg, on_step=self.on_step)
            record = FineTuneRecord(key, mask.sparsity, reg is not None, out.epochs, out.steps, out.wall_s)
            logits = {"dev": out.dev_logits} | ({"test": out.test_logits} if out.test_logits is not None else {})

            def write(tmp: Path) -> None:
                (tmp / "finetune.json").write_text(_json(dataclasses.asdict(record)))
                for split, arr in logits.items():
                    save_array(tmp / f"{split}_logits.npy", arr)

            self.store.write("finetunes", key, write)
            new_mask = mask
            if prune_to is not None:
                weights = {n: p.detach().cpu() for n, p in ws.prunable.items()}
                new_mask = magnitude_prune(weights, mask, prune_to - (mask.total - mask.kept))
                self.store.add_file("finetunes", key, pruned_name, new_mask.save)
            return record, logits, new_mask

    @staticmethod
    def _load(folder: Path, pruned_name: str | None, mask: Mask) -> tuple[FineTuneRecord, dict, Mask]:
        record = FineTuneRecord(**(json.loads((folder / "finetune.json").read_text()) | {"reused": True}))
        logits = {s: load_array(folder / f"{s}_logits.npy") for s in ("dev", "test")
                  if (folder / f"{s}_logits.npy").exists()}
        return record, logits, Mask.load(folder / pruned_name) if pruned_name else mask


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2)


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

