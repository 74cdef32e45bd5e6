"""Named option sets for `mte sweep --preset`: values of `SweepOptions`; options given on the command line still
win.

`quick` is sized for a 2-core CPU: the bundled MiniLM, all five methods, 3 seeds, one-shot pruning to 30%
(1 IMP round), 192 real MRPC training pairs for 2 epochs in batches of 8 (48 steps: with batches of 16,
MiniLM stays at the majority class), 128 dev/test pairs. That is 19 distinct fine-tunes (run time: README).
"""

from __future__ import annotations

from mte.errors import MteError
from mte.hparams import METHODS, DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from sweeps.options import SweepOptions

PRESETS: dict[str, SweepOptions] = {
    "quick": SweepOptions(
        spec=RunSpec(DataHparams(task="mrpc", train_limit=192, eval_limit=128, max_length=128),
                     ModelHparams(model="minilm"), TrainHparams(epochs=2, batch_size=8),
                     MethodHparams(rounds=1, sparsity=0.3)),
        methods=METHODS, seeds=3),
}


def preset(name: str | None) -> SweepOptions:
    """The named preset (no name: the defaults)."""
    if name is None:
        return SweepOptions()
    if name not in PRESETS:
        raise MteError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
