"""Pruning as pure functions: (trained weights, current mask, amount) → new mask; and the L1 coefficients.

Nothing here touches a model or an optimizer; the lottery runner calls these between fine-tunes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mte.errors import MteError
from mte.masks import Mask


def round_targets(total: int, sparsity: float, rounds: int) -> list[int]:
    """Pruned-weight count after each round: round(total·sparsity·r/rounds), r = 1..rounds (exact)."""
    return [round(total * sparsity * r / rounds) for r in range(1, rounds + 1)]


def magnitude_prune(weights: Mapping[str, torch.Tensor], mask: Mask, amount: int) -> Mask:
    """Remove the `amount` surviving weights of smallest magnitude, ranked globally across all tensors."""
    mask.check_compatible(weights)
    if amount < 0 or amount > mask.kept:
        raise MteError(f"cannot prune {amount} of {mask.kept} surviving weights")
    names = sorted(mask)
    scores = torch.cat([
        torch.where(mask[n], weights[n].detach().abs().float(), torch.full_like(weights[n], float("inf"),
                                                                                 dtype=torch.float32)).ravel()
        for n in names
    ])
    flat_keep = torch.cat([mask[n].ravel() for n in names])
    if amount:
        drop = torch.topk(scores, amount, largest=False, sorted=False).indices
        flat_keep[drop] = False
    out, offset = {}, 0
    for n in names:
        size = mask[n].numel()
        out[n] = flat_keep[offset: offset + size].view(mask[n].shape)
        offset += size
    return Mask(out, mask.model)


def active_coefficients(prior_masks: Sequence[Mask]) -> dict[str, torch.Tensor] | None:
    """ACTIVE-LT: l = mean of the earlier seeds' final masks (weights they kept are pushed towards zero)."""
    if not prior_masks:
        return None
    return {n: torch.stack([m[n] for m in prior_masks]).float().mean(0) for n in prior_masks[0]}


def random_coefficients(shapes: Mapping[str, torch.Size], sparsity: float, seed: int) -> dict[str, torch.Tensor]:
    """RANDOM-LT: l ~ Bernoulli with P(l = 0) = sparsity, drawn from the seed (independent across seeds)."""
    g = torch.Generator().manual_seed(1_000_003 * seed + 0x5EED)
    return {n: (torch.rand(shapes[n], generator=g) >= sparsity).float() for n in sorted(shapes)}
