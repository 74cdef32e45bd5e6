"""Hyperparameters, each declared once (default + help), and the hashes that name results.

As in OpenLTH: a field's help text becomes its CLI flag's help, and a hash leaves fields at their default
out, so adding a hyperparameter with a default does not rename results stored before it existed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from mte import methods
from mte.errors import MteError
from mte.fields import check, from_dict, group, hp, to_dict
from mte.methods import Method
from mte.tasks import TASKS, TaskSpec, get_task

ACTIVE_CHAINS = ("all", "group")
PRECISIONS = ("fp32", "tf32", "bf16")
PAPER_LR = 2e-5
# Learning rates at which a model trains well in 3 epochs (measured; see README, "Learning rate").
MODEL_DEFAULT_LR = {"minilm": 1e-4}


@dataclass(frozen=True)
class DataHparams:
    PANEL: ClassVar[str] = "Data"
    task: str = hp("mrpc", "GLUE task (Hugging Face names such as stsb work too).",
                   metavar="[" + "|".join(TASKS) + "]")
    max_length: int = hp(128, "Maximum tokens per example (pair), longer ones are truncated.")
    train_limit: int | None = hp(None, "Use only the first N training examples (quick runs, tests).")
    eval_limit: int | None = hp(None, "Use only the first N dev and test examples (quick runs, tests).")
    holdout: float = hp(0.0, "Evaluate on this seeded fraction held out of train instead of dev (for tuning τ "
                             "without touching dev); the rest of train is trained on.")


@dataclass(frozen=True)
class ModelHparams:
    PANEL: ClassVar[str] = "Model"
    model: str = hp("minilm", "Hugging Face model id or local path; 'minilm' is the bundled all-MiniLM-L6-v2.")
    dropout: float = hp(0.1, "Dropout of hidden states, attention and the classifier.")


@dataclass(frozen=True)
class TrainHparams:
    PANEL: ClassVar[str] = "Fine-tuning"
    lr: float | None = hp(None, "Peak learning rate, decayed linearly to 0 within each fine-tune. "
                                "Unset: the model's default (2e-5 as in the paper; minilm: see README).")
    epochs: int = hp(3, "Epochs per fine-tune.")
    batch_size: int = hp(32, "Training batch size.")
    max_grad_norm: float = hp(1.0, "Gradient-norm clipping threshold.")
    weight_decay: float = hp(0.0, "AdamW weight decay.")
    group_by_length: bool = hp(True, "Batch examples of similar length together (seeded; much less padding).")
    precision: str = hp("fp32", "Arithmetic of the fine-tunes: fp32; tf32 (CUDA: TF32 matmuls); bf16 (bf16 autocast, "
                                "weights and optimizer in fp32). Part of a result's hash when not fp32.",
                        choices=PRECISIONS)


@dataclass(frozen=True)
class MethodHparams:
    PANEL: ClassVar[str] = "Method"
    method: str = hp("baseline", "Method of this seed.", choices=methods.names)
    bagging_fraction: float = hp(0.9, "Fraction of train each BAGGING member sees (drawn without replacement).")
    sparsity: float = hp(0.3, "Fraction of prunable weights removed by the end of IMP.")
    rounds: int = hp(3, "IMP rounds; each removes sparsity/rounds of the original prunable weights.")
    tau: float = hp(1e-4, "L1 coefficient τ of the masking regulariser, decayed like the learning rate.")
    active_chain: str = hp("all", "ACTIVE-LT's chain: seed i is pulled away from the final masks of seeds 0..i−1 "
                                  "(all), or of the earlier seeds of its own group, e.g. 10..i−1 (group; the groups "
                                  "then run in parallel). The paper leaves this open.", choices=ACTIVE_CHAINS)
    rewind_head: bool = hp(True, "IMP rewinds the classifier head to its initial values with the encoder; "
                                 "--no-rewind-head keeps the head trained in the previous round (as BERT-Tickets "
                                 "does).")

    params: tuple[tuple[str, Any], ...] = hp((), "Plugin methods' own parameters given on the command line "
                                                "(name, value), each a flag of its own.", cli=False,
                                                expand=methods.declared_params)

    @staticmethod
    def readers(field: str) -> list[str]:
        """The loaded methods whose result depends on `field` (each flag's help names them)."""
        return [m.name for m in methods.all_methods() if field in m.reads]

    @property
    def declared(self) -> Method:
        """The method these hyperparameters are for (`mte.methods`)."""
        return methods.get(self.method)

    def relevant_fields(self) -> tuple[str, ...]:
        """The fields that change this method's result, as the method declares them (BASELINE reads no τ)."""
        return ("method", *self.declared.reads)

    def own_params(self) -> dict[str, Any]:
        """The values of the method's own parameters (a plugin's) that differ from their declared defaults."""
        declared = self.declared.own()
        return {k: v for k, v in self.params if k in declared and v != declared[k].default}

    def param(self, method: Method, name: str) -> Any:
        """A method's own parameter: its given value, else its declared default."""
        declared = method.own()
        if name not in declared:
            raise MteError(f"method {method.name!r} reads parameter {name!r} but does not declare it in its params")
        return dict(self.params).get(name, declared[name].default)

    def chain_seeds(self, seed: int) -> range:
        """The seeds whose final masks seed `seed` needs, then `seed` itself (a chain method's; else `seed`)."""
        return self.declared.chain_seeds(self, seed)


MIN_MAX_LENGTH = 8
# Bounds on what one plan may ask for, checked before anything is allocated: every IMP round is a full fine-tune
# (the paper prunes in a handful), and a sweep or an ACTIVE-LT chain trains every seed below its count.
MAX_ROUNDS = 100
MAX_SEEDS = 10_000


def check_seed_count(seeds: int, what: str = "--seeds") -> None:
    """A count of seeds to train is at least 1 and at most MAX_SEEDS."""
    if seeds < 1:
        raise MteError(f"{what} must be >= 1, got {seeds}")
    if seeds > MAX_SEEDS:
        raise MteError(f"{what} must be <= {MAX_SEEDS} (each seed is trained), got {seeds}")


def non_default(obj: Any, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Fields that differ from their default (all fields named in `only` that differ)."""
    out = {}
    for f in dataclasses.fields(obj):
        if only is not None and f.name not in only:
            continue
        value = getattr(obj, f.name)
        if value != f.default:
            out[f.name] = value
    return out


def digest(payload: Any, n: int = 16) -> str:
    """Stable short hash of JSON-able data."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one seed's result. Hash it only once `resolved()` (the lr made explicit)."""

    data: DataHparams = group(DataHparams)
    model: ModelHparams = group(ModelHparams)
    train: TrainHparams = group(TrainHparams)
    method: MethodHparams = group(MethodHparams)
    seed: int = hp(0, "Seed: head initialisation, data order, dropout, random masks, bagging subset.")

    @property
    def task(self) -> TaskSpec:
        return get_task(self.data.task)

    def with_method(self, method: str | None = None, seed: int | None = None, **method_fields: Any) -> RunSpec:
        """This spec for another method, seed or method hyperparameter (e.g. one unit of a sweep)."""
        fields = method_fields | ({"method": method} if method is not None else {})
        return dataclasses.replace(self, method=dataclasses.replace(self.method, **fields),
                                   seed=self.seed if seed is None else seed)

    def resolved(self) -> RunSpec:
        """Validated, with model-dependent defaults (the learning rate) made explicit, so the hash says them."""
        self.validate()
        if self.train.lr is not None:
            return self
        lr = MODEL_DEFAULT_LR.get(self.model.model, PAPER_LR)
        return dataclasses.replace(self, train=dataclasses.replace(self.train, lr=lr))

    def validate(self) -> RunSpec:
        check(self)
        self.task  # noqa: B018 (raises for an unknown task)
        m = self.method
        method = m.declared  # one line naming the known methods if there is none
        if not (0.0 <= m.sparsity < 1.0):
            raise MteError(f"sparsity must be in [0, 1), got {m.sparsity}")
        if m.tau < 0:
            raise MteError(f"tau must be >= 0, got {m.tau}")
        if not 1 <= m.rounds <= MAX_ROUNDS:
            raise MteError(f"rounds must be between 1 and {MAX_ROUNDS} (each round is a full fine-tune), "
                           f"got {m.rounds}")
        if not (0.0 < m.bagging_fraction <= 1.0):
            raise MteError(f"bagging fraction must be in (0, 1], got {m.bagging_fraction}")
        if self.seed < 0:
            raise MteError(f"seed must be >= 0, got {self.seed}")
        if method.chain and len(m.chain_seeds(self.seed)) > MAX_SEEDS:
            raise MteError(f"{m.method} seed {self.seed} would first train seeds {m.chain_seeds(self.seed)[0]}.."
                           f"{self.seed - 1}; a chain holds at most {MAX_SEEDS} seeds")
        declared = methods.declared_params()
        for name, value in m.params:
            if name not in declared:
                raise MteError(f"unknown method parameter {name!r} (no loaded method declares it)")
            kind = type(declared[name][0])
            if type(value) is not kind and not (kind is float and type(value) is int):
                raise MteError(f"--{name.replace('_', '-')} must be a {kind.__name__}, got {value!r}")
        method.check(m, self.seed)
        t = self.train
        if t.lr is not None and not t.lr > 0:
            raise MteError(f"learning rate must be > 0, got {t.lr}")
        if t.epochs < 1 or t.batch_size < 1:
            raise MteError("epochs and batch size must be >= 1")
        if t.max_grad_norm <= 0 or t.weight_decay < 0:
            raise MteError("max-grad-norm must be > 0 and weight-decay >= 0")
        if not (0.0 <= self.model.dropout < 1.0):
            raise MteError(f"dropout must be in [0, 1), got {self.model.dropout}")
        d = self.data
        if d.max_length < MIN_MAX_LENGTH:
            raise MteError(f"max-length must be >= {MIN_MAX_LENGTH} (room for the special tokens and some text), "
                           f"got {d.max_length}")
        if not (0.0 <= d.holdout < 1.0):
            raise MteError(f"holdout must be in [0, 1), got {d.holdout}")
        for name in ("train_limit", "eval_limit"):
            v = getattr(d, name)
            if v is not None and v < 1:
                raise MteError(f"{name.replace('_', '-')} must be >= 1, got {v}")
        return self

    def common_key_payload(self) -> dict[str, Any]:
        """Hyperparameters every fine-tune of this seed shares (method-independent)."""
        if self.train.lr is None:
            raise ValueError("resolve the learning rate before hashing")
        return {
            "data": non_default(self.data),
            "model": non_default(self.model),
            "train": non_default(self.train) | {"lr": self.train.lr},
            "seed": self.seed,
        }

    def key_payload(self) -> dict[str, Any]:
        m = self.method
        return self.common_key_payload() | {
            "method": non_default(m, m.relevant_fields()) | m.own_params() | {"method": m.method}
        }

    def key(self, extra: Any = None) -> str:
        """Hash naming this seed's result; `extra` carries inputs outside the spec (active-lt's prior masks)."""
        payload = self.key_payload()
        if extra is not None:
            payload["extra"] = extra
        return digest(payload)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return from_dict(cls, d)

    def flat(self) -> dict[str, Any]:
        """One-level dict (e.g. for tracking params)."""
        out: dict[str, Any] = {"seed": self.seed}
        for part in (self.data, self.model, self.train, self.method):
            out |= dataclasses.asdict(part)
        return out | dict(out.pop("params"))
