"""What one fine-tune and one seed produce, and their on-disk forms in the result store (JSON + .npy + masks;
no pickle).

Folder schema of a fine-tune (`finetunes/<key>/`):
- `finetune.json`: the `FineTuneRecord` (mask sparsity, regularised, per-epoch metrics, steps, wall time, where
  it ran);
- `dev_logits.npy` of the fine-tuned model, and `test_logits.npy` where a seed's result may read it (a ticket,
  a BAGGING or dense unregularised fine-tune; the task has a test split): a round that only leads to a mask
  skips the test split (added if a later sweep needs it, by a retraining that reproduces the dev logits);
- `pruned-<count>.safetensors`: the mask pruned from this fine-tune's weights to <count> removed weights
  (added by the IMP round that needs it; one fine-tune can serve several prune targets);
- `head.safetensors`: the trained task head (what `--no-rewind-head` starts the next round from).

Folder schema of a seed result (`runs/<key>/`):
- `result.json`: key, spec (all hyperparameters), metrics, per-fine-tune records, wall time;
- `mask.safetensors`: the final mask (see `mte.masks`; all ones for dense methods);
- `dev_logits.npy` (n_dev, k) float32, `dev_labels.npy` (n_dev,), `test_logits.npy` if the task has a test split.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mte.hparams import RunSpec
from mte.masks import Mask


def save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save must not append ".npy" to temporary names
        np.save(f, array, allow_pickle=False)


def load_array(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


@dataclass
class FineTuneRecord:
    """One fine-tune of a seed: the mask it trained under, whether τ was on, its metrics and cost."""

    key: str
    sparsity: float
    regularised: bool
    epochs: list[dict[str, float]]
    steps: int
    wall_s: float
    reused: bool = False  # loaded from the store rather than computed in this call
    loss_trace: list[float] = field(default_factory=list)  # mean train loss of every LOSS_WINDOW steps
    ran_on: str = ""  # device, threads, torch (`mte.training.ran_on`); "": a stored record without it

    @property
    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.epochs[-1].items() if k != "epoch"}


FINE_TUNE_JSON = "finetune.json"
TEST_LOGITS = "test_logits.npy"  # stored where a seed's result may read it (its last fine-tune), not every round
HEAD_FILE = "head.safetensors"  # the trained task head (float32; what --no-rewind-head carries to the next round)


def pruned_mask_name(pruned: int) -> str:
    return f"pruned-{pruned}.safetensors"


def save_fine_tune(folder: Path, record: FineTuneRecord, logits: dict[str, np.ndarray]) -> None:
    """Write a fine-tune's folder: its record and its logits by split ("dev", "test")."""
    (folder / FINE_TUNE_JSON).write_text(json.dumps(dataclasses.asdict(record), indent=2))
    for split, arr in logits.items():
        save_array(folder / f"{split}_logits.npy", arr)


def save_head(path: Path, head: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in head.items()}, str(path))


def load_head(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def load_fine_tune(folder: Path) -> tuple[FineTuneRecord, dict[str, np.ndarray]]:
    """A stored fine-tune (marked reused) and its logits by split."""
    record = FineTuneRecord(**(json.loads((folder / FINE_TUNE_JSON).read_text()) | {"reused": True}))
    logits = {s: load_array(folder / f"{s}_logits.npy") for s in ("dev", "test")
              if (folder / f"{s}_logits.npy").exists()}
    return record, logits


@dataclass
class SeedResult:
    key: str
    spec: RunSpec
    mask: Mask
    dev_logits: np.ndarray
    dev_labels: np.ndarray
    test_logits: np.ndarray | None
    rounds: list[FineTuneRecord]
    data_fingerprint: str
    prior_masks: list[str] = field(default_factory=list)  # digests of active-lt's earlier masks
    data_sizes: dict[str, int] = field(default_factory=dict)  # examples per split as trained and scored
    model_params: int = 0  # the whole model's parameter count (a sparsity's share of all of it); 0: not recorded
    elapsed_s: float = 0.0  # time of the call that produced or loaded this result
    loaded: bool = False  # True when this call found the whole result in the store

    @property
    def metrics(self) -> dict[str, float]:
        return self.rounds[-1].metrics

    @property
    def wall_s(self) -> float:
        """Compute time of all fine-tunes, including ones reused from other methods' runs."""
        return sum(r.wall_s for r in self.rounds)

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.key, "spec": self.spec.to_dict(), "metrics": self.metrics,
            "sparsity": self.mask.sparsity, "rounds": [dataclasses.asdict(r) for r in self.rounds],
            "wall_s": self.wall_s, "data_fingerprint": self.data_fingerprint, "prior_masks": self.prior_masks,
            "data_sizes": self.data_sizes, "model_params": self.model_params,
        }

    def save(self, folder: Path) -> None:
        (folder / "result.json").write_text(json.dumps(self.summary(), indent=2))
        self.mask.save(folder / "mask.safetensors")
        save_array(folder / "dev_logits.npy", self.dev_logits)
        save_array(folder / "dev_labels.npy", self.dev_labels)
        if self.test_logits is not None:
            save_array(folder / "test_logits.npy", self.test_logits)

    @classmethod
    def load(cls, folder: Path) -> SeedResult:
        meta = json.loads((folder / "result.json").read_text())
        test = folder / "test_logits.npy"
        return cls(
            key=meta["key"], spec=RunSpec.from_dict(meta["spec"]), mask=Mask.load(folder / "mask.safetensors"),
            dev_logits=load_array(folder / "dev_logits.npy"), dev_labels=load_array(folder / "dev_labels.npy"),
            test_logits=load_array(test) if test.exists() else None,
            rounds=[FineTuneRecord(**r) for r in meta["rounds"]], data_fingerprint=meta["data_fingerprint"],
            prior_masks=meta.get("prior_masks", []), data_sizes=meta.get("data_sizes", {}),
            model_params=meta.get("model_params", 0),
        )
