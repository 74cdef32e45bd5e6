"""A plan that asks for unbounded work (10¹⁰ IMP rounds, 10¹¹ seeds) is refused at once, before anything is
allocated or started: one line, exit 2, within seconds, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEADLINE_S = 30  # a Python start and the CLI's imports on a busy machine; the unbounded plans ran for minutes


@pytest.mark.parametrize("args, line", [
    (["run", "--method", "base-lt", "--rounds", "10000000000"],
     "error: rounds must be between 1 and 100 (each round is a full fine-tune), got 10000000000"),
    (["run", "--method", "active-lt", "--seed", "4000000000"],
     "error: active-lt seed 4000000000 would first train seeds 0..3999999999; a chain holds at most 10000 seeds"),
    (["sweep", "--seeds", "100000000000"], "error: --seeds must be <= 10000 (each seed is trained), got 100000000000"),
])
def test_unbounded_plans_are_refused_at_once(tmp_path: Path, generated_glue: Path, args: list[str], line: str):
    out = tmp_path / "out"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mte", *args, "--data-dir", str(generated_glue), "--out", str(out)],
                          capture_output=True, text=True, timeout=DEADLINE_S, env=env, cwd=tmp_path)
    assert time.monotonic() - start < DEADLINE_S
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [line]
    assert not out.exists() and not (tmp_path / "mlflow.db").exists()
