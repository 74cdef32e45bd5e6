"""Named option sets for `mte sweep --preset`: values of `SweepOptions`; options given on the command line still
win (`mte sweep --preset NAME --dry-run` prints the options a sweep would use).

- `quick` is sized for a 2-core CPU: the bundled MiniLM, all five methods, 3 seeds, one-shot pruning to 30%
  (1 IMP round), 192 real MRPC training pairs for 2 epochs in batches of 8 (48 steps: with batches of 16,
  MiniLM stays at the majority class), 128 dev/test pairs. That is 19 distinct fine-tunes (run time: README).
- `paper` is the paper's protocol: bert-base-uncased, lr 2e-5 (the model's default; MiniLM's is 1e-4, where
  it learns), batch 32, 3 epochs, max length 128, dropout 0.1, clipping 1.0, no weight decay, random batches
  (no length grouping), 3 IMP rounds to 30%, 20 seeds of all five methods, and τ from the newest `mte
  tune-tau` recorded for MRPC (tuned once on MRPC and reused for every task, as the paper does).
"""

from __future__ import annotations

from mte.errors import MteError
from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from mte.methods import PAPER
from sweeps.options import SweepOptions

PRESETS: dict[str, SweepOptions] = {
    "quick": SweepOptions(
        spec=RunSpec(DataHparams(task="mrpc", train_limit=192, eval_limit=128, max_length=128),
                     ModelHparams(model="minilm"), TrainHparams(epochs=2, batch_size=8),
                     MethodHparams(rounds=1, sparsity=0.3)),
        methods=PAPER, seeds=3, preset="quick"),
    "paper": SweepOptions(
        spec=RunSpec(DataHparams(task="mrpc", max_length=128), ModelHparams(model="bert-base-uncased", dropout=0.1),
                     TrainHparams(lr=None, epochs=3, batch_size=32, max_grad_norm=1.0, weight_decay=0.0,
                                  group_by_length=False),
                     MethodHparams(rounds=3, sparsity=0.3)),
        methods=PAPER, seeds=20, tau_from_tuning="mrpc", preset="paper"),
}


def preset(name: str | None) -> SweepOptions:
    """The named preset (no name: the defaults)."""
    if name is None:
        return SweepOptions()
    if name not in PRESETS:
        raise MteError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
