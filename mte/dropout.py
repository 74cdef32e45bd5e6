"""Dropout with masks drawn 16 bits at a time, for training on CPUs.

PyTorch's CPU `bernoulli_` (behind `nn.Dropout` and SDPA's attention dropout) takes its fast, parallel MKL path
only on Intel processors; elsewhere (AMD, Arm) it draws one random number per element on one thread, a large
share of a MiniLM training step (benchmarks/RESULTS.md). Here one 64-bit draw of the same seeded CPU generator
gives four 16-bit lanes; a lane below round(p·65536) − 32768 drops its element. The drop probability is
therefore round(p·65536)/65536 (0.1 → 0.1000061), and the mask is reproducible from `torch.manual_seed`.

`install(net)` swaps every `nn.Dropout` for `LaneDropout` and, where the model uses transformers' attention
interface, routes attention through `attention_forward` (eager math + this dropout while training, SDPA
otherwise). Only for CPU training: CUDA's Philox dropout is already fast and fused into SDPA.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

ATTENTION_NAME = "mte_cpu"
_LANES_PER_WORD = 4  # int16 lanes in one int64 draw


def used_by_default(device: torch.device) -> bool:
    """Whether `fine_tune` trains with lane dropout on `device` unless told otherwise: on CPUs only."""
    return device.type == "cpu"


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Which elements inverted dropout keeps (bool): one 64-bit draw of the seeded generator per four elements."""
    n = math.prod(shape)
    words = torch.empty(-(-n // _LANES_PER_WORD), dtype=torch.int64, device=device).random_(-(2**63), None)
    lanes = words.view(torch.int16)[:n].view(shape)
    return lanes >= round(p * 65536) - 32768


def _multiplier(keep: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    """1/(1−p) (rounded to float32) where `keep`, +0 elsewhere, in `dtype`: the values of `torch.where(keep,
    1/(1−p), 0.0).to(dtype)`, by a cast and an in-place scale, which CPUs vectorise (`where` with two scalar
    branches is not; `benchmarks/bench_dropout.py`)."""
    return keep.to(torch.float32).mul_(1.0 / (1.0 - p)).to(dtype)


def keep_scale(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """Multiplier of inverted dropout: 1/(1−p) where an element is kept, 0 where it is dropped."""
    return _multiplier(keep_mask(shape, p, device), p, dtype)


class _Dropout(torch.autograd.Function):
    """x · multiplier, keeping only the bool mask for the backward pass (a quarter of the float multiplier's
    memory; the attention probabilities' masks are most of it). Forward and gradient are bit for bit those of
    `x * keep_scale(...)`: the backward rebuilds the same multiplier."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.p = p
        return x * _multiplier(keep, p, x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad * _multiplier(keep, ctx.p, grad.dtype), None, None


def lane_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)` with `keep_mask` masks (gradient: the same mask times the incoming one)."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return _Dropout.apply(x, keep_mask(x.shape, p, x.device), p)


def attention_probs_dropout(scores: torch.Tensor, value: torch.Tensor, p: float) -> torch.Tensor:
    """`lane_dropout(softmax(scores), p) @ value` while training; autograd computes the backward."""
    return torch.matmul(lane_dropout(torch.softmax(scores, dim=-1), p), value)


class LaneDropout(nn.Dropout):
    """`nn.Dropout` (same `p`, so code reading `module.p` still works) drawing its mask with `lane_dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lane_dropout(x, self.p, self.training)

    def first_rows(self, x: torch.Tensor, full_shape: torch.Size) -> torch.Tensor:
        """Dropout of the first rows (dim 1) of a `full_shape` tensor, given those rows `x`: it draws the whole
        tensor's mask, so the random stream, and the rows' masks, are those of `forward` on the whole tensor."""
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return x * 0.0
        keep = keep_mask(full_shape, self.p, x.device)[:, : x.shape[1]].contiguous()
        return _Dropout.apply(x, keep, self.p)


def attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: eager attention with `lane_dropout` on the probabilities
    while training; without dropout (evaluation) it is SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=0.0,
                                      **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    return attention_probs_dropout(scores, value, dropout).transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(ATTENTION_NAME, attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, eager_mask)  # additive float mask, built once a forward


def install(net: nn.Module) -> nn.Module:
    """Swap `net`'s dropout for lane dropout, in place (idempotent); returns `net`."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, LaneDropout(child.p, child.inplace))
    if hasattr(net, "use_lane_attention"):  # mte.bert's encoder
        net.use_lane_attention()
        return net
    config = getattr(net, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) in ("sdpa", "eager"):
        _register_attention()
        with contextlib.suppress(ValueError, AttributeError, NotImplementedError):  # outside the interface
            net.set_attn_implementation(ATTENTION_NAME)
    return net
