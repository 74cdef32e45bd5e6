"""Lane dropout: the drop rate and scale of nn.Dropout, reproducible masks, and a model whose eval outputs and
dropout-free attention are those of the stock SDPA model."""

import pytest
import torch
from torch import nn

from mte import dropout
from mte.hparams import ModelHparams
from mte.models import load_model
from mte.tasks import get_task


def test_drop_rate_and_scale_match_inverted_dropout():
    torch.manual_seed(0)
    scale = dropout.keep_scale((1000, 1000), 0.1, torch.float32)
    dropped = (scale == 0).float().mean().item()
    assert abs(dropped - round(0.1 * 65536) / 65536) < 1.5e-3  # 1e6 draws: ±0.0003 is one standard error
    values = scale.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.9)
    x = torch.ones(1000, 1000)
    assert dropout.lane_dropout(x, 0.1).mean().item() == pytest.approx(1.0, abs=2e-3)  # E[out] = x


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9])
def test_other_rates(p):
    torch.manual_seed(1)
    x = torch.ones(200_000)
    out = dropout.lane_dropout(x, p)
    assert (out == 0).float().mean().item() == pytest.approx(p, abs=5e-3)
    assert dropout.lane_dropout(x, 1.0).abs().sum() == 0
    assert torch.equal(dropout.lane_dropout(x, 0.5, training=False), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_multiplier_is_the_where_formulation_bit_for_bit(p, dtype):
    """The scaled cast that builds the multiplier gives `torch.where(keep, 1/(1−p), 0.0).to(dtype)`'s bits (how
    it was built before), so the same masks scale activations, and so logits, identically."""
    keep = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0)) >= p
    built = dropout._multiplier(keep, p, dtype)
    ref = torch.where(keep, 1.0 / (1.0 - p), 0.0).to(dtype)
    bits = torch.int16 if dtype == torch.bfloat16 else torch.int32
    assert built.dtype == dtype and torch.equal(built.view(bits), ref.view(bits))


def test_masks_follow_the_seed_and_gradients_use_the_same_mask():
    torch.manual_seed(7)
    a = dropout.keep_scale((64, 33), 0.1, torch.float32)
    torch.manual_seed(7)
    b = dropout.keep_scale((64, 33), 0.1, torch.float32)
    c = dropout.keep_scale((64, 33), 0.1, torch.float32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(7)
    dropout.lane_dropout(x, 0.1).sum().backward()
    assert torch.equal(x.grad, a)


def test_backward_keeps_a_bool_mask_and_matches_the_float_multiplier_bit_for_bit():
    x = torch.randn(4, 12, 40, 40, requires_grad=True)
    g = torch.randn(4, 12, 40, 40)
    torch.manual_seed(3)
    out = dropout.lane_dropout(x, 0.1)
    torch.manual_seed(3)
    ref = x * dropout.keep_scale(x.shape, 0.1, x.dtype)
    assert torch.equal(out, ref) and torch.equal(out.signbit(), ref.signbit())  # signed zeros too
    assert [t.dtype for t in out.grad_fn.saved_tensors] == [torch.bool]  # not the float multiplier
    assert ref.grad_fn._saved_other.dtype == torch.float32
    assert torch.equal(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])


@pytest.fixture(scope="module")
def models():
    task = get_task("mrpc")
    # transformers' model code (mte.bert's encoder, the default for MiniLM, is tested in test_bert.py)
    stock = load_model(ModelHparams(), task, 0, transformers_code=True)
    lane = dropout.install(load_model(ModelHparams(), task, 0, transformers_code=True))
    return stock, lane


def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (4, 20), generator=g)
    mask = torch.ones(4, 20, dtype=torch.bool)
    mask[1, 15:] = False
    mask[2, 5:] = False
    return {"input_ids": ids, "attention_mask": mask}


def test_install_swaps_every_dropout_and_routes_attention(models):
    stock, lane = models
    n = sum(type(m) is nn.Dropout for m in stock.modules())
    assert n > 0
    assert sum(isinstance(m, dropout.LaneDropout) for m in lane.modules()) == n
    assert not any(type(m) is nn.Dropout for m in lane.modules())
    assert lane.config._attn_implementation == dropout.ATTENTION_NAME
    assert dropout.install(lane) is lane  # idempotent
    assert sum(isinstance(m, dropout.LaneDropout) for m in lane.modules()) == n


def test_eval_outputs_are_the_stock_models(models):
    stock, lane = models
    stock.eval()
    lane.eval()
    with torch.no_grad():
        assert torch.equal(stock(**batch()).logits, lane(**batch()).logits)


def test_training_attention_math_equals_sdpa_when_nothing_is_dropped(models):
    """With p so small that no lane falls below the threshold, the eager path must reproduce SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import bidirectional_mask_function, eager_mask

    _, lane = models
    module = lane.bert.encoder.layer[0].attention.self
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 12, 9, 32, generator=g) for _ in range(3))
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, 6:] = False
    mask = eager_mask(batch_size=2, q_length=9, kv_length=9, attention_mask=keep, dtype=torch.float32,
                      allow_is_bidirectional_skip=False, mask_function=bidirectional_mask_function)
    ours, _ = dropout.attention_forward(module, q, k, v, mask, scaling=32**-0.5, dropout=1e-9)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=32**-0.5, dropout=0.0)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_training_with_lane_dropout_is_reproducible_and_differs_by_seed(models):
    _, lane = models
    lane.train()
    outs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outs.append(lane(**batch()).logits)
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
