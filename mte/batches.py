"""A split tokenised once (right-padded id matrices and true lengths) and the batches a fine-tune draws from it:
dynamic padding cuts each batch to its longest example. Reading and tokenising a split is `mte.data`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TokenizedSplit:
    """A split tokenised once: right-padded id matrices plus true lengths, sliced per batch."""

    input_ids: torch.Tensor  # (n, max_len) int64
    token_type_ids: torch.Tensor | None
    lengths: torch.Tensor  # (n,) int64
    labels: torch.Tensor | None  # (n,) int64 or float32

    def __len__(self) -> int:
        return len(self.lengths)

    def tensors(self) -> dict[str, torch.Tensor]:
        fields = {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids, "lengths": self.lengths,
                  "labels": self.labels}
        return {k: v for k, v in fields.items() if v is not None}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> TokenizedSplit:
        return cls(t["input_ids"], t.get("token_type_ids"), t["lengths"], t.get("labels"))

    def subset(self, index: np.ndarray) -> TokenizedSplit:
        idx = torch.as_tensor(index, dtype=torch.long)
        return TokenizedSplit(self.input_ids[idx], None if self.token_type_ids is None else self.token_type_ids[idx],
                              self.lengths[idx], None if self.labels is None else self.labels[idx])

    def batch(self, index: torch.Tensor, pad_id: int) -> dict[str, torch.Tensor]:
        """Dynamic padding: cut the padded matrix to the longest example in the batch."""
        lengths = self.lengths[index]
        width = int(lengths.max())
        ids = self.input_ids[index, :width]
        out = {"input_ids": ids, "attention_mask": torch.arange(width) < lengths[:, None]}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids[index, :width]
        return out


def pad_id(tokenizer) -> int:
    """The id padding positions hold (0 for a tokenizer without a pad token)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def train_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                  group_by_length: bool) -> list[torch.Tensor]:
    """One epoch's batches of indices, seeded by `generator`.

    Grouping by length follows Hugging Face's LengthGroupedSampler (megabatches of 50 batches, sorted
    inside) and then shuffles the batch order, so the learning-rate schedule sees no length trend.
    """
    perm = torch.randperm(len(lengths), generator=generator)
    if not group_by_length:
        return list(perm.split(batch_size))
    mega = batch_size * 50
    batches: list[torch.Tensor] = []
    for chunk in perm.split(mega):
        order = torch.argsort(lengths[chunk], descending=True, stable=True)
        batches.extend(chunk[order].split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in shuffle]


def eval_batches(lengths: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Evaluation batches sorted by length (order does not change outputs, only padding)."""
    order = torch.argsort(lengths, stable=True)
    yield from order.split(batch_size)
