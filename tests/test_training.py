"""The fine-tune loop on the real MiniLM: masks hold, rewind is exact, schedules reach zero, seeds reproduce."""

import numpy as np
import pytest
import torch
from torch import nn

from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from mte.masks import Mask
from mte.models import load_model, prunable_parameters
from mte.pruning import magnitude_prune, random_coefficients
from mte.tasks import get_task
from mte.training import MaskedAdamW, Regulariser, fine_tune, linear_decay
from mte.workspace import load_data, open_workspace

TINY = dict(train_limit=24, eval_limit=16, max_length=48)


@pytest.fixture(scope="module")
def ws(generated_glue):
    spec = RunSpec(DataHparams(**TINY), ModelHparams(), TrainHparams(epochs=2, batch_size=8),
                   MethodHparams("base-lt"), seed=0).resolved()  # an IMP method: its workspace can rewind
    return spec, open_workspace(spec, generated_glue)


def run(spec, ws, seed=0, mask=None, reg=None):
    ws.initial.rewind(ws.net)
    d = ws.data
    return fine_tune(ws.net, d.task, d.train, d.dev, d.test, spec.train, seed, d.pad_id, mask=mask, reg=reg)


def test_prunable_weights_are_encoder_linears_and_pooler(ws):
    _, w = ws
    names = list(w.prunable)
    assert len(names) == 6 * 6 + 1  # Q, K, V, attention output, intermediate, output per layer + pooler
    assert "bert.pooler.dense.weight" in names
    assert not any("embeddings" in n or "LayerNorm" in n or "classifier" in n or n.endswith("bias") for n in names)


@pytest.mark.parametrize("model_type", ["roberta", "distilbert"])
def test_prunable_found_by_structure_in_other_architectures(model_type):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.for_model(model_type, vocab_size=100, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64, dim=32, n_layers=2, n_heads=2,
                               hidden_dim=64, num_labels=2)
    net = AutoModelForSequenceClassification.from_config(cfg)
    names = list(prunable_parameters(net))
    assert len(names) == 2 * 6
    assert not any("classifier" in n or "pre_classifier" in n or "embed" in n for n in names)


def test_pruned_weights_and_adamw_moments_stay_zero():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    w = {"0.weight": net[0].weight.detach().clone(), "2.weight": net[2].weight.detach().clone()}
    mask = magnitude_prune(w, Mask.dense(w), 100)
    update = MaskedAdamW(net, TrainHparams(lr=1e-2), mask,
                         Regulariser(1e-2, random_coefficients({k: v.shape for k, v in w.items()}, 0.3, 0)))
    for step in range(20):
        loss = net(torch.randn(8, 16)).pow(2).mean()
        update.zero_grad()
        loss.backward()
        update.step(linear_decay(step, 20))
    for name, param in (("0.weight", net[0].weight), ("2.weight", net[2].weight)):
        pruned = ~mask[name]
        assert torch.all(param[pruned] == 0)
        state = update.optimizer.state[param]
        assert torch.all(state["exp_avg"][pruned] == 0) and torch.all(state["exp_avg_sq"][pruned] == 0)
        assert torch.any(param[~pruned] != w[name][~pruned])  # survivors did train


def test_dropping_gradients_trains_bit_for_bit_like_zeroed_buffers():
    """zero_grad sets gradients to None (a speed lever: no fill, no accumulate) without changing one bit."""

    def train(zero_filled: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
        w = {"0.weight": net[0].weight.detach().clone(), "2.weight": net[2].weight.detach().clone()}
        update = MaskedAdamW(net, TrainHparams(lr=1e-2), magnitude_prune(w, Mask.dense(w), 100),
                             Regulariser(1e-2, random_coefficients({k: v.shape for k, v in w.items()}, 0.3, 0)))
        data = torch.Generator().manual_seed(1)
        for step in range(10):
            loss = net(torch.randn(8, 16, generator=data)).pow(2).mean()
            if zero_filled:
                update.optimizer.zero_grad(set_to_none=False)
            else:
                update.zero_grad()
                assert all(p.grad is None for p in net.parameters())
            loss.backward()
            update.step(linear_decay(step, 10))
        return [p.detach().clone() for p in net.parameters()]

    for a, b in zip(train(zero_filled=True), train(zero_filled=False), strict=True):
        assert torch.equal(a, b)


def test_schedule_reaches_zero_within_each_fine_tune(ws):
    spec, w = ws
    out = run(spec, w)
    total = out.steps
    assert total == 2 * 3  # 24 examples / batch 8 × 2 epochs: the schedule spans one fine-tune only
    lr = spec.train.lr
    assert out.lr_trace[0] == lr
    assert np.allclose(np.diff(out.lr_trace), -lr / total)
    assert out.lr_trace[-1] - lr / total == pytest.approx(0.0, abs=1e-15)  # next value: exactly 0
    assert linear_decay(total, total) == 0.0 and linear_decay(0, total) == 1.0


def test_masked_fine_tune_keeps_zeros_and_rewind_is_exact(ws, generated_glue):
    spec, w = ws
    weights = {n: p.detach().clone() for n, p in w.prunable.items()}
    mask = magnitude_prune(weights, Mask.dense(weights), Mask.dense(weights).total // 5)
    run(spec, w, mask=mask, reg=Regulariser(1e-3, random_coefficients(
        {n: p.shape for n, p in w.prunable.items()}, 0.2, 0)))
    for n, p in w.prunable.items():
        assert torch.all(p.detach()[~mask[n]] == 0)
    w.initial.rewind(w.net)
    fresh = load_model(spec.model, get_task("mrpc"), seed=0)
    for (name, a), (_, b) in zip(w.net.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # pretrained encoder and this seed's head, bit for bit


def test_same_seed_same_logits_different_seed_different(ws):
    spec, w = ws
    a = run(spec, w, seed=0).dev_logits
    b = run(spec, w, seed=0).dev_logits
    c = run(spec, w, seed=1).dev_logits
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_dev_is_evaluated_once_unless_epoch_curves_are_asked_for(ws):
    spec, w = ws
    w.initial.rewind(w.net)
    d = w.data
    once = fine_tune(w.net, d.task, d.train, d.dev, None, spec.train, 0, d.pad_id)
    w.initial.rewind(w.net)
    curves = fine_tune(w.net, d.task, d.train, d.dev, None, spec.train, 0, d.pad_id, epoch_eval=True)
    assert [set(e) for e in once.epochs] == [{"epoch", "train_loss"}, {"epoch", "train_loss", "accuracy", "f1"}]
    assert all({"accuracy", "f1"} <= set(e) for e in curves.epochs)
    assert np.array_equal(once.dev_logits, curves.dev_logits)  # the same training, evaluated less often
    assert [e["train_loss"] for e in once.epochs] == [e["train_loss"] for e in curves.epochs]


def test_a_one_fine_tune_method_keeps_no_copy_of_the_initial_weights(generated_glue):
    spec = RunSpec(DataHparams(**TINY), ModelHparams(), TrainHparams(epochs=1, batch_size=8), MethodHparams(),
                   seed=0).resolved()
    w = open_workspace(spec, generated_glue)
    assert w.initial is None
    w.rewind()  # the first fine-tune starts from the model as loaded
    with pytest.raises(RuntimeError, match="no initial weights"):
        w.rewind()


def test_heads_differ_by_seed():
    task = get_task("mrpc")
    a = load_model(ModelHparams(), task, 0).classifier.weight
    b = load_model(ModelHparams(), task, 1).classifier.weight
    assert not torch.equal(a, b)
    assert torch.equal(a, load_model(ModelHparams(), task, 0).classifier.weight)


def test_limits_apply(generated_glue):
    spec = RunSpec(DataHparams(**TINY), ModelHparams(), TrainHparams(), MethodHparams(), 0).resolved()
    data = load_data(spec, generated_glue)
    train, dev, test = data.train, data.dev, data.test
    assert (len(train), len(dev), len(test)) == (24, 16, 16)
    assert int(train.lengths.max()) <= 48


def test_cpu_fine_tune_trains_with_lane_dropout_unless_told_not_to(ws):
    from mte.dropout import LaneDropout

    spec, w = ws
    run(spec, w)
    assert any(isinstance(m, LaneDropout) for m in w.net.modules())
    assert w.net.config.attention == "lane"  # mte.bert's encoder (test_dropout: transformers' models)
    stock = load_model(spec.model, get_task("mrpc"), seed=0)
    d = w.data
    fine_tune(stock, d.task, d.train, d.dev, None, spec.train, 0, d.pad_id, lane_dropout=False)
    assert not any(isinstance(m, LaneDropout) for m in stock.modules())
    assert any(type(m) is nn.Dropout for m in stock.modules())
    assert stock.config.attention == "sdpa"
