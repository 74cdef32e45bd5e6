"""BERT-family encoders (BERT, MiniLM) for sequence classification in plain PyTorch, loaded without transformers.

Why: every process that loads a model through transformers first imports its model code (torch.distributed.tensor,
torch._dynamo and SciPy's optimizer come with it), seconds of every `mte run` and again of every trial process of a
sweep (benchmarks/RESULTS.md). This module computes what `BertForSequenceClassification` computes, op for op (the
last layer after its attention only for the rows the pooler reads: `Layer.first_rows`), so logits, gradients and
trained weights are those of the transformers model up to rounding (`tests/test_bert.py` compares them with
tolerances), with the same parameter names, so masks and stored heads are interchangeable. It covers the plain
encoder only; `load` returns None for anything else (another architecture, another activation, relative positions,
a checkpoint whose keys do not match one to one), and `mte.models` then loads it through transformers. Its
tokenizer is `mte.tokenizer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

from mte import dropout as dropout_mod
from mte.dropout import LaneDropout

# transformers' BertConfig defaults for the fields read here (a config.json may leave any of them out)
DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
            "initializer_range": 0.02, "pad_token_id": 0}
LEGACY_NAMES = ((".gamma", ".weight"), (".beta", ".bias"))  # old TF-converted checkpoints (bert-base-uncased)
IGNORED_KEYS = ("embeddings.position_ids", "cls.")  # a buffer and the pretraining heads, unused here


@dataclass
class BertConfig:
    """The fields of a Hugging Face BERT config.json this encoder reads, plus the task's label count."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    initializer_range: float
    pad_token_id: int | None  # the embedding row that gets no gradient (None: none)
    num_labels: int
    dropout: float
    # "sdpa" (transformers' default: boolean padding mask, SDPA with its own dropout) or "lane" (after
    # `mte.dropout.install`: additive float mask, eager attention with lane dropout while training)
    attention: str = "sdpa"


def supported(raw: dict) -> bool:
    """Whether a config.json describes the plain encoder this module computes exactly (a head count that does not
    divide the hidden size, zero or not a number included, is left to transformers, which reports it)."""
    hidden, heads = (raw.get(k, DEFAULTS[k]) for k in ("hidden_size", "num_attention_heads"))
    return (raw.get("model_type") == "bert" and raw.get("hidden_act", "gelu") == "gelu"
            and raw.get("position_embedding_type", "absolute") == "absolute" and not raw.get("is_decoder", False)
            and not raw.get("add_cross_attention", False) and not raw.get("chunk_size_feed_forward", 0)
            and isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads == 0)


def covered_config(folder: str | Path) -> dict | None:
    """`folder`'s config.json, parsed, if this module covers the model it describes; else None (unreadable too)."""
    try:
        raw = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) and supported(raw) else None


class Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        self.register_buffer("position_ids", torch.arange(c.max_position_embeddings)[None], persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(self.position_ids[:, :input_ids.shape[1]])
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.config = c
        self.head_size = c.hidden_size // c.num_attention_heads
        self.scaling = self.head_size ** -0.5
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        shape = (*x.shape[:-1], -1, self.head_size)
        q, k, v = (proj(x).view(shape).transpose(1, 2) for proj in (self.query, self.key, self.value))
        p = self.dropout.p if self.training else 0.0
        if self.config.attention == "lane" and p > 0.0:
            scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
            if mask is not None:
                scores = scores + mask
            out = dropout_mod.attention_probs_dropout(scores, v, p)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, scale=self.scaling,
                                                 is_causal=False)
        return out.transpose(1, 2).contiguous().reshape(*x.shape[:-1], -1).contiguous()


class AddNorm(nn.Module):
    """dense → dropout → LayerNorm(· + residual): transformers' BertSelfOutput and BertOutput."""

    def __init__(self, c: BertConfig, inputs: int):
        super().__init__()
        self.dense = nn.Linear(inputs, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = SelfAttention(c)
        self.output = AddNorm(c, c.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = AddNorm(c, c.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)

    def first_rows(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """`forward`'s output for the first row of each sequence only, (batch, 1, hidden): what the pooler reads.

        Attention needs every row's key and value, but the output dense, LayerNorms and feed-forward block after
        it (9 of the layer's 12 hidden² multiply-adds per token) matter only for the rows read, so they run on
        those; autograd does the backward. Dropout draws the whole layer's masks and uses their first rows, so a
        fine-tune follows the random stream of the full layer and equals it up to rounding (`tests/test_bert.py`).
        Where a mask cannot be drawn that way (`nn.Dropout` or SDPA's dropout while training) it is `forward`.
        """
        drops = (self.attention.output.dropout, self.output.dropout)
        if self.training and not all(d.p == 0.0 or isinstance(d, LaneDropout) for d in drops):
            return self(x, mask)[:, :1]
        out1, out2 = self.attention.output, self.output
        context = self.attention.self(x, mask)[:, :1]
        h = out1.LayerNorm(_first_rows_dropout(out1.dropout, out1.dense(context), x.shape) + x[:, :1])
        return out2.LayerNorm(_first_rows_dropout(out2.dropout, out2.dense(self.intermediate(h)), x.shape) + h)


def _first_rows_dropout(dropout: nn.Dropout, rows: torch.Tensor, full_shape: torch.Size) -> torch.Tensor:
    """`dropout` of the first rows of a `full_shape` tensor; without a mask to draw (evaluation, p = 0), the rows."""
    return dropout.first_rows(rows, full_shape) if isinstance(dropout, LaneDropout) else dropout(rows)


class Encoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))


class Pooler(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class BertModel(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.config = c
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.pooler = Pooler(c)

    def attention_mask(self, padding: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        """transformers' bidirectional mask: none without padding; else (batch, 1, L, L), boolean for SDPA or
        0 / the dtype's minimum for lane attention."""
        if padding is None or bool(padding.all()):
            return None
        n, length = padding.shape
        keep = padding.bool()[:, None, None, :].expand(n, 1, length, length)
        if self.config.attention != "lane":
            return keep.contiguous()  # as transformers materialises it: SDPA's kernel choice may depend on strides
        return torch.where(keep, torch.zeros((), dtype=x.dtype, device=x.device), torch.finfo(x.dtype).min)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids)
        mask = self.attention_mask(attention_mask, x)
        layers = list(self.encoder.layer)
        for layer in layers[:-1]:
            x = layer(x, mask)
        if layers:
            x = layers[-1].first_rows(x, mask)  # the pooler reads the first rows only
        return self.pooler(x)


class BertForSequenceClassification(nn.Module):
    """Encoder, pooler, dropout and a linear head; `net(**batch).logits`, as a transformers model."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.config = c
        self.bert = BertModel(c)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.hidden_size, c.num_labels)

    @property
    def base_model(self) -> BertModel:
        return self.bert

    def use_lane_attention(self) -> None:
        """Attention as transformers computes it under `mte.dropout`'s attention function."""
        self.config.attention = "lane"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> SimpleNamespace:
        pooled = self.bert(input_ids, attention_mask, token_type_ids)
        return SimpleNamespace(logits=self.classifier(self.dropout(pooled)))


def _read_weights(folder: Path) -> dict[str, torch.Tensor] | None:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    return None  # sharded checkpoints: left to transformers


def _encoder_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoint keys as `BertModel` names them: without the `bert.` prefix, legacy LayerNorm names renamed."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("bert.")
        if key.startswith(IGNORED_KEYS):
            continue
        if "LayerNorm" in key:
            for old, new in LEGACY_NAMES:
                if key.endswith(old):
                    key = key[: -len(old)] + new
        out[key] = value
    return out


def load(folder: str | Path, num_labels: int, dropout: float, seed: int) -> BertForSequenceClassification | None:
    """The pretrained encoder in `folder` with a classification head drawn from `seed` as transformers draws it
    (normal(0, initializer_range) weight, zero bias); None where this module does not cover the model."""
    folder = Path(folder)
    raw = covered_config(folder)
    if raw is None:
        return None
    try:
        state = _read_weights(folder)
    except Exception:
        return None
    if state is None:
        return None
    config = BertConfig(**{k: raw.get(k, default) for k, default in DEFAULTS.items()}, num_labels=num_labels,
                        dropout=dropout)
    weights = _encoder_weights(state)
    if any(w.dtype != torch.float32 for w in weights.values()):
        return None  # transformers would keep the checkpoint's dtype
    net = BertForSequenceClassification(config)
    expected = net.bert.state_dict()
    if set(weights) != set(expected) or any(weights[k].shape != v.shape for k, v in expected.items()):
        return None  # missing (e.g. no pooler), extra or reshaped weights: transformers' loading rules apply
    with torch.no_grad():
        for key, value in expected.items():
            value.copy_(weights[key])
        torch.manual_seed(seed)  # the only randomness in loading: the newly initialised head
        net.classifier.weight.normal_(0.0, config.initializer_range)
        net.classifier.bias.zero_()
    return net
