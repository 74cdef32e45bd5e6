"""AdamW through PyTorch's fused kernel, without `torch.optim`.

Why: `torch.optim.Optimizer` imports `torch._dynamo` the first time an optimizer is built (its `add_param_group`
and `step` carry dynamo guards), and that import (sympy and 800 modules with it) is a fixed cost of every
fine-tune process, every `mte run` and every trial of a sweep (benchmarks/RESULTS.md, lever 9). This class calls
the kernel `torch.optim.AdamW(fused=True)` calls, `torch._fused_adamw_`, with the same state and arguments, so the
weights it produces are theirs bit for bit (tests/test_adamw.py). Only what mte uses is here: one parameter group,
no amsgrad, maximize, grad scaling or capturable steps.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

BETAS = (0.9, 0.999)  # torch.optim.AdamW's defaults, which mte uses
EPS = 1e-8


def supported(device: torch.device) -> bool:
    """Whether the fused kernel runs on `device` (elsewhere mte uses torch.optim.AdamW)."""
    return device.type in ("cpu", "cuda") and hasattr(torch, "_fused_adamw_")


class FusedAdamW:
    """The part of `torch.optim.AdamW(params, lr, weight_decay=..., fused=True)` that mte uses: `param_groups[0]
    ["lr"]` (set before each step), `step()`, `zero_grad()` and `state[param]` (`step`, `exp_avg`, `exp_avg_sq`)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0):
        self.params = list(params)
        self.param_groups = [{"params": self.params, "lr": lr, "weight_decay": weight_decay, "betas": BETAS,
                              "eps": EPS}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update of every parameter that has a gradient (as torch.optim: the others keep no state)."""
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        kinds: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in self.params:
            if p.grad is None:
                continue
            if p not in self.state:  # torch.optim's lazy state: a float32 step count on the parameter's device
                self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            kinds.setdefault((p.device, p.dtype), []).append(p)
        for params in kinds.values():
            states = [self.state[p] for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                                [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False, lr=group["lr"],
                                beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                maximize=False, grad_scale=None, found_inf=None)
