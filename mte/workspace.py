"""What every fine-tune of one seed shares: its tokenised data (cached in the result store), the model, and the
weights to rewind to."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mte import data as data_mod
from mte.hparams import LOTTERY_METHODS, RunSpec
from mte.models import Initial, load_model, load_tokenizer, prunable_parameters
from mte.store import Store


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
