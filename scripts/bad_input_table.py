"""Print what `mte` does with bad input: case → exit code → message → what was left behind (a Markdown table).

Each case runs as a real process in its own empty folder. To compare versions, point PYTHONPATH at another checkout:
    python scripts/bad_input_table.py                        # this checkout
    PYTHONPATH=/path/to/old/checkout python scripts/bad_input_table.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import write_bad_inputs, write_mrpc  # noqa: E402
from servers import free_port  # noqa: E402
from test_bad_input import (  # noqa: E402
    damaged_cases,
    read_only_folder,
    write_damaged_inputs,
)

TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "16"]


def world(root: Path) -> tuple[Path, dict[str, list[str]]]:
    glue = write_mrpc(root / "glue")
    write_bad_inputs(root)
    write_damaged_inputs(root, glue)
    (root / "report-out-file").write_text("x")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'edited.db'}")
    exp = client.create_experiment("mte", artifact_location=(root / "art").as_uri())
    config = {"spec": {}, "methods": ["baseline"], "seeds": 1, "paths": {"data_dir": str(glue), "store": "/etc"}}
    old = {"hparams": {"data": {}, "model": {}, "train": {}, "method": {}}, "methods": "baseline", "seeds": 1,
           "data_dir": str(glue), "store": "/etc"}
    client.create_run(exp, run_name="sweep-edited", tags={"role": "sweep", "sweep": "0" * 16,
                                                          "sweep_config": json.dumps(config | old)})
    data = ["--data-dir", str(glue)]
    edited = f"sqlite:///{root / 'edited.db'}"
    return glue, {
        "--tau inf": ["run", "--method", "random-lt", *TINY, "--tau", "inf", *data],
        "--lr inf": ["run", *TINY, "--lr", "inf", *data],
        "--dropout 1.5": ["run", *TINY, "--dropout", "1.5", *data],
        "--max-length -1": ["run", *TINY, "--max-length", "-1", *data],
        "--max-length 0": ["run", *TINY, "--max-length", "0", *data],
        "--model /nonexistent": ["run", *TINY, "--model", "/nonexistent", *data],
        "--model <folder, not a model>": ["run", *TINY, "--model", str(root / "not-a-model"), *data],
        "--prior-mask <not a mask>": ["run", *TINY, "--method", "active-lt", "--seed", "1", "--prior-mask",
                                      str(root / "not-a-mask.safetensors"), *data],
        "sweep --model /nonexistent": ["sweep", *TINY, "--seeds", "1", "--model", "/nonexistent", *data],
        "tune-tau, TSV missing a column": ["tune-tau", "--method", "random-lt", "--data-dir", str(root / "broken")],
        "tracking db under a file": ["sweep", *TINY, "--seeds", "1", "--tracking-uri",
                                     f"sqlite:///{root}/a-file/m.db", *data],
        "--tracking-uri foo://bar": ["sweep", *TINY, "--seeds", "1", "--tracking-uri", "foo://bar", *data],
        "--tracking-uri <bare folder>": ["sweep", *TINY, "--seeds", "1", "--tracking-uri", str(root), *data],
        "--ray-address <closed port>": ["sweep", *TINY, "--seeds", "1", "--ray-address",
                                        f"127.0.0.1:{free_port()}", *data],
        "ui --port 70000": ["ui", "--tracking-uri", edited, "--port", "70000"],
        "report --run-id <unknown>": ["report", "--tracking-uri", edited, "--run-id", "0" * 32],
        "report --out <a file>": ["report", "--tracking-uri", edited, "--out", str(root / "a-file")],
        "report, no database": ["report"],
        "sweep --resume, no database": ["sweep", "--resume"],
        "sweep --resume, store edited to /etc": ["sweep", "--resume", "--tracking-uri", edited],
    }


def left_behind(cwd: Path) -> str:
    found = [p.name for p in (cwd / "mlflow.db", cwd / "mte-store" / "runs", cwd / "mlartifacts") if p.exists()]
    return ", ".join(found) or "nothing"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mte-bad-") as tmp:
        root = Path(tmp)
        glue, cases = world(root)
        with read_only_folder(root) as read_only:
            table(root, cases | _test_cases(root, glue, read_only))


def _test_cases(root: Path, glue: Path, read_only: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """tests/test_bad_input.py's cases of damaged input, as this script runs them (small run and sweep options)."""
    out = {}
    for name, (args, _, *env) in damaged_cases(root, glue, read_only).items():
        if args[0] in ("run", "sweep") and "--resume" not in args:
            args = [args[0], *TINY, *args[1:]]
        out[name] = (args, env[0] if env else {})
    return out


def table(root: Path, cases: dict) -> None:
    print(f"mte from: {os.environ.get('PYTHONPATH') or REPO}")
    print("| case | exit | stderr (lines: last) | left behind | s |")
    print("|---|---|---|---|---|")
    for i, (name, case) in enumerate(cases.items()):
        args, env = case if isinstance(case, tuple) else (case, {})
        cwd = root / f"case{i}"
        cwd.mkdir()
        start = time.monotonic()
        try:
            r = subprocess.run([sys.executable, "-m", "mte", *args], cwd=cwd, capture_output=True, text=True,
                               timeout=240, env=os.environ | {"COLUMNS": "400", "HF_HUB_OFFLINE": "1", **env})
            code, err = r.returncode, r.stderr
        except subprocess.TimeoutExpired:
            code, err = "timeout (240 s)", ""
        lines = [ln for ln in err.strip().splitlines() if ln.strip() and "━" not in ln]
        last = (lines[-1] if lines else "").replace("|", "/")[:150]
        print(f"| {name} | {code} | {len(lines)}: {last} | {left_behind(cwd)} | {time.monotonic() - start:.0f} |")


if __name__ == "__main__":
    main()
