"""Named option sets for `mte sweep --preset`; options given on the command line still win.

`quick` is sized for a 2-core CPU: the bundled MiniLM, all five methods, 3 seeds, one-shot pruning to 30%
(1 IMP round), 192 real MRPC training pairs for 2 epochs in batches of 8 (48 steps: with batches of 16,
MiniLM stays at the majority class), 128 dev/test pairs. That is 19 distinct fine-tunes, so the sweep and its
report take about 6 minutes on an otherwise idle 2-core machine (measured: `bash scripts/quick.sh`, set-up
included, 347 s).
"""

from __future__ import annotations

from typing import Any

from mte.errors import MteError

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"task": "mrpc", "model": "minilm", "methods": "all", "seeds": 3, "rounds": 1, "sparsity": 0.3,
              "train_limit": 192, "eval_limit": 128, "epochs": 2, "batch_size": 8, "max_length": 128},
}


def preset(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    if name not in PRESETS:
        raise MteError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
