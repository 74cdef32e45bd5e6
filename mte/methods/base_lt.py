"""BASE-LT: iterative magnitude pruning (IMP) without a regulariser; ACTIVE-LT and RANDOM-LT add one."""

from __future__ import annotations

from typing import Any

from mte.methods.method import Method, Seed, Step


def imp(seed: Seed, reg_id: Any = None, reg: Any = None, rewind_steps: int = 0) -> list[Step]:
    """IMP: `rounds` pruning fine-tunes (each under `reg`, pruning to the next target of the original prunable
    weights, then rewinding), then the ticket, never regularised. Without --rewind-head each fine-tune starts
    from the previous one's trained head."""
    hp = seed.hp
    keep = not hp.rewind_head
    rounds = [Step(f"round {r + 1}/{hp.rounds} ({{sparsity}} pruned)", target, reg_id, reg, keep_head=keep,
                   rewind_steps=rewind_steps if r > 0 else 0)
              for r, target in enumerate(seed.targets())]
    return [*rounds, Step("ticket ({sparsity} pruned)", rewind_steps=rewind_steps)]


class BaseLT(Method):
    name = "base-lt"
    label = "BASE-LT"
    reads = ("sparsity", "rounds", "rewind_head")
    prunes = True

    def fine_tunes(self, seed: Seed) -> list[Step]:
        return imp(seed)
