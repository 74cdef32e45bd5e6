"""What every fine-tune of one seed shares: its tokenised data (cached in the result store), the model, and the
weights to rewind to."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mte import data as data_mod
from mte.hparams import RunSpec
from mte.methods import dry
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
    """What all fine-tunes of one seed share: tokenised data (the method's training subset), the model, and the
    points to rewind to: the initial weights (None for a one-fine-tune method: its model is trained once, as
    loaded, and a copy of the weights would only cost memory) and, for late rewinding, the weights after k steps
    of the seed's dense first fine-tune, made once and kept for the seed's later fine-tunes."""

    data: data_mod.TaskData
    net: nn.Module
    initial: Initial | None
    prunable: dict[str, nn.Parameter]
    pristine: bool = True  # the model holds its initial weights (nothing trained yet)
    later: dict[int, Initial] = dataclasses.field(default_factory=dict)  # optimizer steps → weights then

    def rewind(self, head: dict[str, torch.Tensor] | None = None, steps: int = 0) -> None:
        """The model back at its initial weights, or (`steps`) at those of `later[steps]`; `head`: a trained
        head instead of that point's."""
        point = self.later[steps] if steps else self.initial
        if point is not None:
            point.rewind(self.net, head)
        elif not self.pristine or head:
            raise RuntimeError("this workspace kept no initial weights to rewind to (a one-fine-tune method)")
        self.pristine = False


def open_workspace(spec: RunSpec, data_dir: Path | None, store: Store | None = None) -> Workspace:
    """The seed's data, restricted to its method's training subset, and its model, with a copy of its initial
    weights where the method's plan has more than one fine-tune (each starts again from them)."""
    data = load_data(spec, data_dir, store)
    method = spec.method.declared
    subset = method.train_subset(spec.method, spec.seed, len(data.train))
    if subset is not None:
        data = dataclasses.replace(data, train=data.train.subset(subset))
    net = load_model(spec.model, data.task, spec.seed)
    initial = Initial.capture(net) if len(dry.plan(method, spec.method, spec.seed)) > 1 else None
    return Workspace(data, net, initial, prunable_parameters(net))
