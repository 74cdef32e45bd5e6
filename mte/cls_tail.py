"""The last encoder layer after its attention, computed for the [CLS] row only, bit for bit.

A sequence classifier reads one row of the last layer's output, the first token's (the pooler's input). That
layer's attention needs every row's key and value, but its output dense, LayerNorms and feed-forward block
(9 of the layer's 12 hidden² multiply-adds per token) only matter for that row: the other rows' outputs get
zero gradient. `tail` computes them for the first row of each sequence: 8% of a MiniLM step's matrix products
(weight gradients stay full-size, below), 0.943× the time of a training batch's forward and backward
(`benchmarks/bench_cls_tail.py`). What it must not change is a single bit:

- forward rows and input gradients are matrix products of fewer rows, which the CPU BLAS computes per row as it
  does for all rows from 12 rows on (fewer rows take a small-matrix path): `MIN_ROWS` pads them with zero rows;
- weight and bias gradients, and the LayerNorms' gradients, are sums over rows whose grouping depends on the row
  count: they are computed on zero-padded tensors of the full (batch · length) shape, exactly the calls autograd
  makes for the full layer (the rows it would add are exact zeros there too);
- dropout draws the full layer's masks, in the same order, and uses their first rows.

`tests/test_cls_tail.py` compares outputs, every gradient and whole fine-tunes with the full layer bit for bit.
Used on CPUs in float32 (`applies`): other BLAS (cuBLAS) pick kernels by shape, and autocast changes dtypes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mte import dropout as dropout_mod

MIN_ROWS = 32  # row count from which this CPU's BLAS gives each row the bits it gives it among all rows


def applies(x: torch.Tensor, training: bool, dropouts: tuple[nn.Module, ...]) -> bool:
    """Whether `tail` computes what the full layer computes, bit for bit, for this input and mode."""
    lane = all(d.p == 0.0 or (isinstance(d, dropout_mod.LaneDropout) and d.p < 1.0) for d in dropouts)
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type)
            and (lane or not training))


def _rows(x: torch.Tensor, fn) -> torch.Tensor:
    """fn(x) for a (rows, n) matrix, computed on at least MIN_ROWS rows (zero rows added, then dropped)."""
    if len(x) >= MIN_ROWS:
        return fn(x)
    padded = x.new_zeros((MIN_ROWS, x.shape[1]))
    padded[: len(x)] = x
    return fn(padded)[: len(x)]


def _dropped(x: torch.Tensor, multiplier: torch.Tensor | None) -> torch.Tensor:
    """x times its inverted-dropout multiplier (forward and backward alike); x itself without dropout."""
    return x if multiplier is None else x * multiplier


def _scatter(first: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """A zero (batch · length, n) matrix whose first row of each sequence is `first` (batch, n)."""
    out = first.new_zeros((batch, length, first.shape[1]))
    out[:, 0] = first
    return out.view(batch * length, -1)


class _Tail(torch.autograd.Function):
    """LayerNorm(dropout(context·W_aoᵀ + b) + x) → h; LayerNorm(dropout(gelu(h·W_iᵀ + b_i)·W_oᵀ + b_o) + h),
    for the first row; returns the full (batch, length, hidden) output with zeros in the other rows."""

    @staticmethod
    def forward(fctx, context, x, m1, m2, w_ao, b_ao, g1, be1, eps1, w_i, b_i, w_o, b_o, g2, be2, eps2):
        batch, length, hidden = x.shape
        a = _rows(context[:, 0].contiguous(), lambda r: F.linear(r, w_ao, b_ao))
        s1 = _dropped(a, m1) + x[:, 0]
        h1, mean1, rstd1 = torch.native_layer_norm(s1, [hidden], g1, be1, eps1)
        i = _rows(h1, lambda r: F.linear(r, w_i, b_i))
        g = F.gelu(i)
        s2 = _dropped(_rows(g, lambda r: F.linear(r, w_o, b_o)), m2) + h1
        h2, mean2, rstd2 = torch.native_layer_norm(s2, [hidden], g2, be2, eps2)
        fctx.save_for_backward(context, m1, m2, s1, mean1, rstd1, h1, i, g, s2, mean2, rstd2,
                               w_ao, g1, be1, w_i, w_o, g2, be2)
        return _scatter(h2, batch, length).view(batch, length, hidden)

    @staticmethod
    def backward(fctx, grad):
        (context, m1, m2, s1, mean1, rstd1, h1, i, g, s2, mean2, rstd2,
         w_ao, g1, be1, w_i, w_o, g2, be2) = fctx.saved_tensors
        batch, length, hidden = context.shape

        def layer_norm_backward(dy0, s, mean, rstd, weight, bias):
            # the full layer's call: zero rows where its rows get no gradient (their x̂ is 0 here, a zero product)
            full = (_scatter(t, batch, length).view(batch, length, -1) for t in (dy0, s, mean, rstd))
            dy, s_full, mean_full, rstd_full = full
            dx, dw, db = torch.ops.aten.native_layer_norm_backward(dy, s_full, [hidden], mean_full, rstd_full,
                                                                  weight, bias, [True, True, True])
            return dx[:, 0], dx, dw, db

        def linear_backward(dy0, x_full, w):
            dy = _scatter(dy0, batch, length)  # AddmmBackward's calls on the full (batch · length) rows
            return _rows(dy0, lambda r: r.mm(w)), dy.t().mm(x_full), dy.sum(0)

        ds2, _, dg2, dbe2 = layer_norm_backward(grad[:, 0], s2, mean2, rstd2, g2, be2)
        dgelu, dw_o, db_o = linear_backward(_dropped(ds2, m2), _scatter(g, batch, length), w_o)
        di = torch.ops.aten.gelu_backward(dgelu, i)
        dh1, dw_i, db_i = linear_backward(di, _scatter(h1, batch, length), w_i)
        dh1 = ds2 + dh1  # the residual's gradient arrives first, as autograd accumulates it
        _, ds1_full, dg1, dbe1 = layer_norm_backward(dh1, s1, mean1, rstd1, g1, be1)
        dc0, dw_ao, db_ao = linear_backward(_dropped(ds1_full[:, 0], m1), context.reshape(batch * length, hidden),
                                            w_ao)
        dcontext = _scatter(dc0, batch, length).view(batch, length, hidden)
        return dcontext, ds1_full, None, None, dw_ao, db_ao, dg1, dbe1, None, dw_i, db_i, dw_o, db_o, dg2, dbe2, None


def tail(layer: nn.Module, context: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`layer`'s output (an `mte.bert.Layer`) from its attention's `context` and its input `x`, right in the
    first row of each sequence and zero in the others."""
    out1, inter, out2 = layer.attention.output, layer.intermediate, layer.output
    # the full layer's two masks, drawn in its order (nothing draws between them); their first rows' multipliers
    # (float32, as `applies` requires) scale the forward and the backward, as lane dropout's own do
    m1, m2 = (dropout_mod._multiplier(dropout_mod.keep_mask(x.shape, d.p, x.device)[:, 0], d.p, x.dtype)
              if d.training and d.p > 0.0 else None for d in (out1.dropout, out2.dropout))
    return _Tail.apply(context, x, m1, m2, out1.dense.weight, out1.dense.bias, out1.LayerNorm.weight,
                       out1.LayerNorm.bias, out1.LayerNorm.eps, inter.dense.weight, inter.dense.bias,
                       out2.dense.weight, out2.dense.bias, out2.LayerNorm.weight, out2.LayerNorm.bias,
                       out2.LayerNorm.eps)
