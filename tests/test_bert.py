"""mte.bert against transformers: the same tokens, the same loaded weights and head; one step's logits and every
gradient, and whole fine-tunes' logits, loss trace and trained weights, equal up to rounding (mte.bert computes the
last layer after attention for the [CLS] rows only, so matrix products run on other row counts, which a CPU's
BLAS may round differently: the tolerances below hold on AMD and Intel); models it does not cover load through
transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from mte import bert, dropout
from mte import data as data_mod
from mte.hparams import DataHparams, ModelHparams, TrainHparams
from mte.models import load_model, load_tokenizer, resolve_model_path
from mte.tasks import get_task
from mte.tokenizer import Tokenizer
from mte.training import fine_tune

MODEL = ModelHparams()


def assert_same_state(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """The same state-dict keys, in the same order, holding equal tensors."""
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def raw(glue_dir):
    return data_mod.load_splits(get_task("mrpc"), glue_dir, DataHparams())


def test_tokens_equal_transformers_at_full_and_truncating_lengths(raw):
    ours, theirs = load_tokenizer(MODEL), load_tokenizer(MODEL, transformers_code=True)
    assert isinstance(ours, Tokenizer) and not isinstance(theirs, Tokenizer)
    assert ours.pad_token_id == theirs.pad_token_id
    for split in (raw["train"], raw["dev"]):
        for max_length in (128, 24):  # 24 truncates most pairs (longest first)
            a, b = data_mod.tokenize(split, ours, max_length), data_mod.tokenize(split, theirs, max_length)
            assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.token_type_ids, b.token_type_ids)
            assert torch.equal(a.lengths, b.lengths)
    single = replace(raw["dev"], texts=raw["dev"].texts[:1])  # one-sentence tasks
    a, b = data_mod.tokenize(single, ours, 32), data_mod.tokenize(single, theirs, 32)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.token_type_ids, b.token_type_ids)


@pytest.mark.parametrize("seed", [0, 5])
def test_loaded_weights_names_and_head_equal_transformers(seed):
    ours = load_model(MODEL, get_task("mrpc"), seed)
    theirs = load_model(MODEL, get_task("mrpc"), seed, transformers_code=True)
    assert isinstance(ours, bert.BertForSequenceClassification)
    assert_same_state(ours, theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert sum(type(m) is torch.nn.Dropout for m in ours.modules()) == sum(
        type(m) is torch.nn.Dropout for m in theirs.modules())


def _splits(raw, task_name: str, n_train: int, n_dev: int):
    tokenizer = load_tokenizer(MODEL)
    train = data_mod.tokenize(raw["train"], tokenizer, 128)
    dev = data_mod.tokenize(raw["dev"], tokenizer, 128)
    train = train.subset(torch.arange(n_train))
    dev = dev.subset(torch.arange(n_dev))
    if task_name == "sts-b":  # regression targets in [0, 5] on the same pairs
        g = torch.Generator().manual_seed(0)
        train = replace(train, labels=torch.rand(n_train, generator=g) * 5)
        dev = replace(dev, labels=torch.rand(n_dev, generator=g) * 5)
    return train, dev


@pytest.mark.parametrize(("task_name", "lane", "precision"), [
    ("mrpc", True, "fp32"),   # CPU default: lane dropout, eager attention while training
    ("mrpc", False, "fp32"),  # SDPA's own dropout (what CUDA runs)
    ("sts-b", True, "fp32"),  # regression head
    ("mrpc", True, "bf16"),
])
def test_fine_tunes_equal_transformers_up_to_rounding(raw, task_name, lane, precision):
    task = get_task(task_name)
    # 2 epochs of 2 steps (one of 8 pairs); bf16, many times slower on the 2-core test VM, 1 step of 8 pairs
    n_train, n_dev, epochs = (40, 24, 2) if precision == "fp32" else (8, 8, 1)
    train, dev = _splits(raw, task_name, n_train, n_dev)
    hp = TrainHparams(epochs=epochs, lr=1e-4, precision=precision)
    results, nets = [], []
    for transformers_code in (False, True):
        net = load_model(MODEL, task, 3, transformers_code=transformers_code)
        results.append(fine_tune(net, task, train, dev, dev, hp, seed=3, pad_id=0, lane_dropout=lane))
        nets.append(net)
    ours, theirs = results
    assert ours.dev_logits.shape == (n_dev, task.num_labels)
    # fp32: 8e-8 apart on logits of about 0.1 (Intel Xeon); bf16 rounds each product to 8 bits of mantissa
    logits_tol = 1e-5 if precision == "fp32" else 5e-3
    np.testing.assert_allclose(ours.dev_logits, theirs.dev_logits, rtol=0, atol=logits_tol)
    np.testing.assert_allclose(ours.test_logits, theirs.test_logits, rtol=0, atol=logits_tol)
    np.testing.assert_allclose(ours.loss_trace, theirs.loss_trace, rtol=0, atol=10 * logits_tol)
    # AdamW moves a weight by up to lr a step whatever its gradient's size, so a gradient that is rounding noise
    # (e.g. a key bias: softmax ignores it) may move its weight either way: at most 2 · lr · steps apart
    a, b = (net.state_dict() for net in nets)
    assert list(a) == list(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=2 * hp.lr * ours.steps, msg=key)
    assert not torch.equal(nets[0].state_dict()["bert.encoder.layer.0.attention.self.query.weight"],
                           load_model(MODEL, task, 3).state_dict()["bert.encoder.layer.0.attention.self.query.weight"])


def test_lane_dropout_install_reaches_the_attention():
    net = dropout.install(load_model(MODEL, get_task("mrpc"), 0))
    assert net.config.attention == "lane"
    assert not any(type(m) is torch.nn.Dropout for m in net.modules())
    assert sum(isinstance(m, dropout.LaneDropout) for m in net.modules()) == 1 + 3 * 6 + 1


def _copy_model(tmp_path: Path, **config) -> Path:
    source = Path(resolve_model_path("minilm"))
    folder = tmp_path / "model"
    folder.mkdir()
    for f in source.iterdir():
        if f.is_file():
            (folder / f.name).symlink_to(f)
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(json.loads((source / "config.json").read_text()) | config))
    return folder


def test_config_fields_left_out_or_null_are_read_as_transformers_reads_them(tmp_path):
    """No pad token (`null`: no embedding row is spared its gradient) and fields left to BertConfig's defaults."""
    folder = _copy_model(tmp_path, pad_token_id=None)
    saved = json.loads((folder / "config.json").read_text())
    left_out = ("type_vocab_size", "layer_norm_eps", "initializer_range", "max_position_embeddings")
    for field in left_out:
        saved.pop(field)
    (folder / "config.json").write_text(json.dumps(saved))
    model = ModelHparams(model=str(folder))
    ours = load_model(model, get_task("mrpc"), 0)
    theirs = load_model(model, get_task("mrpc"), 0, transformers_code=True)
    assert isinstance(ours, bert.BertForSequenceClassification)
    assert ours.bert.embeddings.word_embeddings.padding_idx is None
    assert theirs.bert.embeddings.word_embeddings.padding_idx is None
    for name in left_out:
        assert getattr(ours.config, name) == getattr(theirs.config, name), name
    assert_same_state(ours, theirs)


def test_models_it_does_not_cover_load_through_transformers(tmp_path):
    folder = _copy_model(tmp_path, hidden_act="gelu_new")
    assert bert.load(folder, 2, 0.1, 0) is None
    net = load_model(ModelHparams(model=str(folder)), get_task("mrpc"), 0)
    assert type(net).__module__.startswith("transformers.")
    assert net.config.hidden_act == "gelu_new"


@pytest.mark.parametrize("heads", [0, 5, "12"])
def test_a_head_count_it_cannot_split_by_is_not_covered(tmp_path, heads):
    """Zero heads, heads that do not divide the hidden size (384) or a count that is not a number: no exception
    from the check, the model is left to transformers."""
    assert bert.covered_config(_copy_model(tmp_path, num_attention_heads=heads)) is None


@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_an_old_checkpoint_layout_loads_as_transformers_loads_it(tmp_path, weights_file):
    """bert-base-uncased's layout: `bert.` prefixes, LayerNorm gamma/beta, the pretraining heads beside."""
    from safetensors.torch import load_file, save_file

    folder = _copy_model(tmp_path)
    (folder / "model.safetensors").unlink()
    state = load_file(Path(resolve_model_path("minilm")) / "model.safetensors")
    legacy = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in state.items()}
    legacy["cls.predictions.bias"] = torch.zeros(state["embeddings.word_embeddings.weight"].shape[0])
    assert any(k.endswith("LayerNorm.gamma") for k in legacy)
    if weights_file.endswith(".bin"):
        torch.save(legacy, folder / weights_file)
    else:
        save_file(legacy, folder / weights_file)
    model = ModelHparams(model=str(folder))
    ours = load_model(model, get_task("mrpc"), 1)
    theirs = load_model(model, get_task("mrpc"), 1, transformers_code=True)
    assert isinstance(ours, bert.BertForSequenceClassification)
    assert_same_state(ours, theirs)
    assert torch.equal(ours.state_dict()["bert.embeddings.LayerNorm.weight"], state["embeddings.LayerNorm.weight"])


def test_a_run_imports_no_transformers(tmp_path, generated_glue):
    """What saves a process the 2.4–3.0 s of transformers' model code: tokenise, load, fine-tune without it."""
    code = f"""
import sys, torch
from pathlib import Path
from mte import data as data_mod
from mte.hparams import DataHparams, TrainHparams
from mte.hparams import ModelHparams
from mte.models import load_model, load_tokenizer
from mte.tasks import get_task
from mte.training import fine_tune
task = get_task("mrpc")
tok = load_tokenizer(ModelHparams())
raw = data_mod.load_splits(task, Path({str(generated_glue)!r}), DataHparams())
train, dev = (data_mod.tokenize(raw[s], tok, 128) for s in ("train", "dev"))
net = load_model(ModelHparams(), task, 0)
fine_tune(net, task, train.subset(torch.arange(8)), dev.subset(torch.arange(8)), None, TrainHparams(epochs=1, lr=1e-4),
          seed=0, pad_id=0)
print(sorted(m for m in sys.modules if m.split(".")[0] == "transformers"))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout[-500:]


def _batch(rows: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """`rows` sequences of up to `length` tokens, the first one unpadded, the others padded at random."""
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
    return logits.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def lane_pair():
    """mte.bert and transformers' model with the same weights, both on lane dropout (the CPU default)."""
    return tuple(dropout.install(load_model(MODEL, get_task("mrpc"), 5, transformers_code=code))
                 for code in (False, True))


@pytest.mark.parametrize("rows", [1, 5, 12, 32, 37])
@pytest.mark.parametrize("training", [True, False])
def test_first_row_layer_gives_the_full_layers_logits_and_gradients(lane_pair, rows, training):
    """One step against transformers' full last layer, with dropout drawing the same masks: logits 4e-8 apart
    and gradients 1e-9 apart (Intel Xeon) on gradients up to 1; key biases, whose gradient softmax makes
    rounding noise (1e-9), are why the tolerance has an absolute part."""
    ours, theirs = lane_pair
    batch = _batch(rows, 23, rows)
    logits, grads = _step(ours, batch, training)
    full_logits, full_grads = _step(theirs, batch, training)
    torch.testing.assert_close(logits, full_logits, rtol=1e-5, atol=1e-6)
    assert grads.keys() == full_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    if training:  # dropout was on (the masks matched, or the logits above would not)
        _, again = _step(ours, batch, training)
        assert torch.equal(again["classifier.weight"], grads["classifier.weight"])  # same seed, same path, same bits
        ours.eval()
        with torch.no_grad():
            assert not torch.allclose(ours(**batch).logits, logits)


def test_first_rows_are_the_full_layers_first_rows():
    net = load_model(MODEL, get_task("mrpc"), 0).eval()
    batch = _batch(6, 17, 0)
    with torch.inference_mode():
        bert_model = net.bert
        x = bert_model.embeddings(batch["input_ids"], batch["token_type_ids"])
        mask = bert_model.attention_mask(batch["attention_mask"], x)
        for layer in bert_model.encoder.layer[:-1]:
            x = layer(x, mask)
        last = bert_model.encoder.layer[-1]
        first, full = last.first_rows(x, mask), last(x, mask)
    assert first.shape == (6, 1, x.shape[-1])
    torch.testing.assert_close(first, full[:, :1], rtol=1e-5, atol=1e-6)
