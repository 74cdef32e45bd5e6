"""Methods as plugins: the README's example through `mte sweep` (Ray) and `mte report`, late rewinding's rewind
point, plugin hashes, entry points, a plugin sent to a trial as its text, and bad plugins refused in one line."""

from __future__ import annotations

import ast
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from mlflow import MlflowClient

from mte import plugins
from mte.errors import MteError
from mte.hparams import DataHparams, MethodHparams, RunSpec, TrainHparams

EXAMPLE = REPO / "examples" / "methods" / "late_rewind.py"
TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "8",
        "--rounds", "1"]


def readme_example() -> str:
    """The first fenced python block of the README's "Adding a method" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def method_name(source: str) -> str:
    """The literal `name = "..."` of the plugin's method class."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["name"]:
            assert isinstance(node.value, ast.Constant), "the method's name is a literal"
            return node.value.value
    raise AssertionError("no `name = ...` in the README's example")


def mte(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mte", *args], cwd=cwd, text=True, capture_output=True,
                          timeout=timeout, env=(env or os.environ) | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"})


def test_the_readme_shows_the_example_whole():
    source = readme_example()
    assert source == EXAMPLE.read_text()
    assert method_name(source) == "late-lt"


def test_the_readme_example_through_sweep_and_report(glue_dir, tmp_path):
    """The README's block as a user's file, outside the repository: a Ray sweep of it beside BASELINE and BASE-LT
    (its trials load it from the text the driver sends), then the report, with and without the plugin."""
    source = readme_example()
    name = method_name(source)
    plugin = tmp_path / "my_method.py"
    plugin.write_text(source)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = ["--tracking-uri", uri, "--experiment", "plug"]
    swept = mte("sweep", "--plugin", str(plugin), "--methods", f"baseline,base-lt,{name}", "--seeds", "2", *TINY,
                "--rewind-steps", "1", "--data-dir", str(glue_dir), "--out", str(tmp_path / "store"), *common,
                "--max-concurrent", "2", "--no-report", cwd=tmp_path)
    print(swept.stderr[-3000:], swept.stdout[-3000:])
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert "6 trials: 0 already recorded, 6 to run" in swept.stderr
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("plug")
    trials = client.search_runs([exp.experiment_id], "tags.role = 'trial'")
    assert sorted((r.data.tags["method"], r.data.tags["seed"]) for r in trials) == sorted(
        (m, s) for m in ("baseline", "base-lt", name) for s in ("0", "1"))
    late = [r for r in trials if r.data.tags["method"] == name]
    assert all(r.info.status == "FINISHED" and r.data.params["rewind_steps"] == "1" for r in late)
    assert all(r.data.params["target_sparsity"] == "0.3" and "tau" not in r.data.params for r in late)
    assert all(r.data.metrics["sparsity"] == pytest.approx(0.3, abs=1e-3) for r in late)
    keys = {(r.data.tags["method"], r.data.tags["seed"]): r.data.tags["hash"] for r in trials}
    assert keys[(name, "0")] != keys[("base-lt", "0")]

    again = mte("sweep", "--plugin", str(plugin), "--methods", f"baseline,base-lt,{name}", "--seeds", "2", *TINY,
                "--rewind-steps", "1", "--data-dir", str(glue_dir), "--out", str(tmp_path / "store"), *common,
                "--no-report", "--dry-run", cwd=tmp_path)
    assert again.returncode == 0 and "recorded: 6 of 6 units" in again.stdout + again.stderr, again.stderr
    resumed = mte("sweep", "--resume", "--dry-run", *common, cwd=tmp_path)  # the plugin as the sweep recorded it
    assert resumed.returncode == 0 and "recorded: 6 of 6 units" in resumed.stdout + resumed.stderr, resumed.stderr

    for args, folder in (([ "--plugin", str(plugin)], "report"), ([], "report-without-plugin")):
        reported = mte("report", *args, *common, "--out", str(tmp_path / folder), cwd=tmp_path)
        print(reported.stderr[-2000:], reported.stdout[-3000:])
        assert reported.returncode == 0, reported.stdout + reported.stderr
        with open(tmp_path / folder / "table1_ensembles.csv") as f:
            rows = {r["method"]: r for r in csv.DictReader(f)}
        assert set(rows) == {"baseline", "base-lt", name}
        assert (tmp_path / folder / f"mask_iou_{name}.csv").exists()  # its members are tickets
        assert "LATE-LT" in (tmp_path / folder / "report.md").read_text()


def test_late_rewinding_rewinds_to_the_weights_after_k_steps(generated_glue, tmp_path, clean_registry):
    """The rewind point is where the seed's first fine-tune stood after k steps (stopping there leaves the same
    weights as a whole fine-tune passing that step); late-lt shares its first round with BASELINE and BASE-LT,
    not its later ones, and k is part of its key only when it is not the default."""
    from mte.lottery import run_seed
    from mte.store import Store
    from mte.training import fine_tune
    from mte.workspace import open_workspace

    plugins.load([str(EXAMPLE)])
    spec = RunSpec(DataHparams(train_limit=24, eval_limit=8, max_length=32), train=TrainHparams(epochs=1,
                   batch_size=8), method=MethodHparams("late-lt", rounds=1, params=(("rewind_steps", 2),))).resolved()
    ws = open_workspace(spec, generated_glue)
    d = ws.data
    snapshot = {}

    def at_step(step: int, total: int) -> None:
        if step == 2:
            snapshot.update({k: v.detach().clone() for k, v in ws.net.state_dict().items()})

    whole = fine_tune(ws.net, d.task, d.train, d.dev, None, spec.train, spec.seed, d.pad_id, on_step=at_step)
    assert whole.steps == 3 and snapshot
    ws.rewind()
    stopped = fine_tune(ws.net, d.task, d.train, d.dev, None, spec.train, spec.seed, d.pad_id, stop_after=2)
    assert stopped.steps == 2
    for k, v in ws.net.state_dict().items():
        torch.testing.assert_close(v, snapshot[k], rtol=1e-5, atol=1e-6, msg=k)

    store = Store(tmp_path / "store")
    late = run_seed(spec, store, generated_glue, test=False)
    base = run_seed(spec.with_method("base-lt"), store, generated_glue, test=False)
    assert late.rounds[0].key == base.rounds[0].key and late.rounds[1].key != base.rounds[1].key
    assert late.rounds[0].reused is False and base.rounds[0].reused is True
    assert not np.array_equal(late.dev_logits, base.dev_logits)  # the ticket trained from another starting point
    default = spec.with_method(params=(("rewind_steps", 10),))
    assert default.key() == spec.with_method(params=()).key() != spec.key()
    assert spec.key_payload()["method"] == {"method": "late-lt", "rounds": 1, "rewind_steps": 2}
    with pytest.raises(MteError, match="has only 3 optimizer steps"):
        run_seed(spec.with_method(params=(("rewind_steps", 5),)), store, generated_glue, test=False)


def test_an_entry_point_adds_a_method_and_its_flags(tmp_path):
    """An installed package's `mte.methods` entry point: its method is a --method choice and its parameter a flag,
    with no --plugin."""
    site = tmp_path / "site"
    (site / "late_pkg-0.1.dist-info").mkdir(parents=True)
    (site / "late_pkg.py").write_text(EXAMPLE.read_text())
    (site / "late_pkg-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: late-pkg\nVersion: 0.1\n")
    (site / "late_pkg-0.1.dist-info" / "entry_points.txt").write_text(
        "[mte.methods]\nlate-lt = late_pkg:LateRewindLT\n")
    env = os.environ | {"PYTHONPATH": str(site)}
    out = mte("run", "--help", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "late-lt]" in out.stdout and "--rewind-steps" in out.stdout
    assert "late-lt" not in mte("run", "--help", cwd=tmp_path).stdout  # without the package: not there


def test_a_file_plugin_reaches_a_trial_as_its_text(tmp_path):
    """A trial process loads a file plugin from the text its driver recorded; the file need not exist there."""
    source = {"given": "/nowhere/late_rewind.py", "module": plugins.module_name(Path("late_rewind.py"),
              EXAMPLE.read_text()), "text": EXAMPLE.read_text(), "file": "/nowhere/late_rewind.py"}
    code = (f"from mte import plugins, methods; plugins.load_sources([{source!r}]); "
            "print(methods.get('late-lt').title(), methods.get('late-lt').own()['rewind_steps'].default)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.split() == ["LATE-LT", "10"], out.stderr


GOOD = EXAMPLE.read_text()
BAD = {
    "syntax.py": ("def (", "--plugin {p}: it failed to load: line 1: SyntaxError"),
    "nothing.py": ("x = 1\n", "--plugin {p}: it registers no method"),
    "unknown_field.py": (GOOD.replace('reads = ("sparsity", "rounds", "rewind_head")', 'reads = ("warmup",)'),
                         "method 'late-lt' reads 'warmup', which is no method hyperparameter"),
    "clash.py": (GOOD.replace('Param("rewind_steps"', 'Param("seed"'),
                 "method 'late-lt': parameter 'seed' clashes with mte's option --seed"),
    "raises.py": (GOOD.replace('return imp(seed, rewind_steps=seed.param("rewind_steps"))', 'return 1 / 0'),
                  "method 'late-lt': its fine_tunes failed on a dry run: ZeroDivisionError"),
    "twice.py": (GOOD.replace('name = "late-lt"', 'name = "baseline"'),
                 "method 'baseline' is declared twice"),
    "bad_name.py": (GOOD.replace('name = "late-lt"', 'name = "Late LT"'),
                    "its name must be lower case words joined by dashes"),
    "imports.py": ("import not_a_module_anywhere\n",
                   "it failed to load: line 1: ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
    "missing.py": (None, "--plugin {p}: no such file"),
    "no_such_module_xyz": (None, "--plugin no_such_module_xyz: no file or importable module"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_plugin_is_one_line_and_nothing_starts(case, tmp_path, generated_glue):
    text, expected = BAD[case]
    path = tmp_path / case if case.endswith(".py") else None
    if path is not None and text is not None:
        path.write_text(text)
    given = str(path) if path is not None else case
    out = mte("sweep", "--plugin", given, "--methods", "baseline", "--seeds", "1", *TINY, "--data-dir",
              str(generated_glue), "--out", str(tmp_path / "store"), "--tracking-uri",
              f"sqlite:///{tmp_path / 'mlflow.db'}", cwd=tmp_path, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and expected.format(p=given) in lines[0], lines[0]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "store").exists()
