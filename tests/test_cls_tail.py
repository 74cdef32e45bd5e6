"""mte.cls_tail: the last layer computed for the first rows gives the full layer's logits and every gradient bit
for bit (training with lane dropout, evaluation), at row counts on both sides of MIN_ROWS, and the products it pads
give each row the full product's bits on this machine's BLAS."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mte import cls_tail, dropout
from mte.hparams import ModelHparams
from mte.models import load_model
from mte.tasks import get_task


@pytest.fixture(scope="module")
def net():
    return dropout.install(load_model(ModelHparams(), get_task("mrpc"), 5))


def _batch(rows: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 20000, (rows, length), generator=g)
    lengths = torch.randint(length // 2, length + 1, (rows,), generator=g)
    lengths[0] = length
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids[:, 0] = 101
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _step(net: torch.nn.Module, batch: dict[str, torch.Tensor], training: bool) -> tuple[torch.Tensor, dict]:
    """Logits and every parameter's gradient of one seeded forward and backward."""
    net.train(training)
    net.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    logits = net(**batch).logits
    if not training:
        return logits.detach(), {}
    weights = torch.linspace(-1.0, 1.0, logits.numel()).view_as(logits)
    (logits * weights).sum().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize("rows", [1, 5, 12, 32, 37])
@pytest.mark.parametrize("training", [True, False])
def test_tail_gives_the_full_layers_logits_and_gradients_bit_for_bit(net, monkeypatch, rows, training):
    batch = _batch(rows, 23, rows)
    calls = []
    tail = cls_tail.tail
    monkeypatch.setattr(cls_tail, "tail", lambda *a: calls.append(1) or tail(*a))
    logits, grads = _step(net, batch, training)
    assert calls, "the last layer did not take the first-row path"
    monkeypatch.setattr(cls_tail, "applies", lambda *a: False)  # the reference: the full last layer
    full_logits, full_grads = _step(net, batch, training)
    assert torch.equal(logits, full_logits)
    assert grads.keys() == full_grads.keys()
    differ = [n for n in grads if not torch.equal(grads[n], full_grads[n])]
    assert not differ, differ
    if training:  # the tail's weights got gradients, and the dropout masks were the full layer's
        assert grads["bert.encoder.layer.5.output.dense.weight"].abs().sum() > 0


def test_the_first_rows_are_the_full_layers_and_the_others_zero(net):
    net.eval()
    batch = _batch(6, 17, 0)
    with torch.inference_mode():
        bert = net.bert
        x = bert.embeddings(batch["input_ids"], batch["token_type_ids"])
        mask = bert.attention_mask(batch["attention_mask"], x)
        for layer in bert.encoder.layer[:-1]:
            x = layer(x, mask)
        last = bert.encoder.layer[-1]
        first, full = last.first_rows(x, mask), last(x, mask)
    assert torch.equal(first[:, 0], full[:, 0])
    assert not first[:, 1:].any()


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])  # a sweep trial's threads, and mte run's here
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize(("inputs", "outputs"), [(384, 384), (384, 1536), (1536, 384)])
def test_padded_products_give_every_row_the_full_products_bits(threads, inputs, outputs):
    g = torch.Generator().manual_seed(inputs + outputs)
    w, b = torch.randn(outputs, inputs, generator=g) * 0.05, torch.randn(outputs, generator=g)
    x, dy = torch.randn(32 * 40, inputs, generator=g), torch.randn(32 * 40, outputs, generator=g)
    full, dx = F.linear(x, w, b), dy.mm(w)
    for rows in range(1, 70):
        pick = torch.arange(rows) * 7
        assert torch.equal(cls_tail._rows(x[pick], lambda r: F.linear(r, w, b)), full[pick]), rows
        assert torch.equal(cls_tail._rows(dy[pick], lambda r: r.mm(w)), dx[pick]), rows
