"""One fine-tune of a seed through the result store: loaded if stored, else rewound, trained, pruned and saved.

A fine-tune is stored under a hash of what determines it (the seed's hyperparameters, the data, its mask, its
regulariser, its training subset and a kept head), so every method and seed that asks for the same one shares it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mte.errors import MteError
from mte.hparams import RunSpec, digest
from mte.masks import Mask
from mte.methods import Step
from mte.models import Initial, head_parameters
from mte.pruning import magnitude_prune
from mte.results import (
    HEAD_FILE,
    TEST_LOGITS,
    FineTuneRecord,
    load_fine_tune,
    load_head,
    pruned_mask_name,
    save_array,
    save_fine_tune,
    save_head,
)
from mte.store import Store
from mte.training import StepCallback, fine_tune
from mte.workspace import Workspace


@dataclass
class Trained:
    """What one fine-tune leaves for the seed: its record and logits, the mask pruned from its weights (or the mask
    it trained under), and its trained head with the key that names it (None unless asked for)."""

    record: FineTuneRecord
    logits: dict[str, np.ndarray]
    mask: Mask
    head: tuple[str, dict[str, torch.Tensor]] | None = None


class FineTuneRunner:
    """Runs one seed's fine-tunes through the store: load if present, else rewind, train, save."""

    def __init__(self, spec: RunSpec, ws: Workspace, store: Store, base: dict, on_step: StepCallback | None,
                 test: bool = True, epoch_curves: bool = False):
        self.spec, self.ws, self.store, self.base, self.on_step = spec, ws, store, base, on_step
        self.test, self.epoch_curves = test, epoch_curves

    def fine_tune(self, mask: Mask, step: Step, start_head: tuple[str, dict[str, torch.Tensor]] | None) -> Trained:
        """One fine-tune from the initial weights (or the step's later rewind point) under `mask` (with
        `start_head`'s trained head instead of the initial one, if given), then the mask pruned to the step's
        target and (if the step keeps its head) its trained head.

        A stored fine-tune lacking a file asked for (a pruned mask for another target, a head) is trained again
        (its weights are not kept); the file is added only if the retrained logits equal the stored ones bit for
        bit, else the folder is replaced whole, so everything in one folder comes from one training.
        """
        prune_to, want_head = step.prune_to, step.keep_head
        dense = mask.kept == mask.total
        payload = {"mask": "dense" if dense else mask.digest(), "reg": step.reg_id, "subset": step.subset}
        if start_head is not None:  # a head kept from the previous round is part of the starting point
            payload["head"] = start_head[0]
        if step.rewind_steps:  # so is a later rewind point
            payload["rewind_steps"] = step.rewind_steps
        key = digest(self.base | payload)
        # Test logits are read only from a seed's last fine-tune: a ticket, BAGGING's, and the dense unregularised
        # one (BASELINE's, which is also BASE-LT's first round). Rounds that only lead to a mask skip them.
        want_test = self.test and self.ws.data.test is not None and (prune_to is None or (dense and step.reg is None))
        needed = ([pruned_mask_name(prune_to)] if prune_to is not None else []) + ([HEAD_FILE] if want_head else []) \
            + ([TEST_LOGITS] if want_test else [])
        def stored(folder: Path) -> tuple[dict[str, np.ndarray], Trained | None]:
            """The entry's logits, and the whole result unless a file this step needs is not there yet."""
            record, logits = load_fine_tune(folder)
            if not all((folder / n).exists() for n in needed):
                return logits, None
            pruned = Mask.load(folder / needed[0]) if prune_to is not None else mask
            head = (key, load_head(folder / HEAD_FILE)) if want_head else None
            return logits, Trained(record, logits, pruned, head)

        with self.store.lock("finetunes", key):
            found = self.store.load("finetunes", key, stored)
            if found is not None and found[1] is not None:
                return found[1]
            ws = self.ws
            if step.rewind_steps and step.rewind_steps not in ws.later:
                self._rewind_point(step.rewind_steps)
            ws.rewind(start_head[1] if start_head else None, step.rewind_steps)
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
            return Trained(record, logits, new_mask, (key, head) if want_head else None)

    def _rewind_point(self, steps: int) -> None:
        """The weights after `steps` optimizer steps of the seed's dense, unregularised first fine-tune (the same
        data order, dropout and learning-rate schedule, stopped there), kept in the workspace."""
        ws = self.ws
        ws.rewind()
        done = fine_tune(ws.net, ws.data.task, ws.data.train, ws.data.dev, None, self.spec.train, self.spec.seed,
                         ws.data.pad_id, stop_after=steps)
        if done.steps != steps:
            raise MteError(f"cannot rewind to step {steps}: the seed's first fine-tune has only {done.steps} "
                           "optimizer steps")
        ws.later[steps] = Initial.capture(ws.net)


def _same(stored: dict[str, np.ndarray], logits: dict[str, np.ndarray]) -> bool:
    """Whether a retraining reproduced every stored logit bit for bit (it may have computed more splits)."""
    return stored.keys() <= logits.keys() and all(np.array_equal(v, logits[k]) for k, v in stored.items())
