"""`mte run` as a user meets it: help, a real run, and bad input as one line with a non-zero exit."""

import subprocess
import sys

import pytest
from conftest import write_mrpc

TINY = ["--train-limit", "16", "--eval-limit", "8", "--epochs", "1", "--max-length", "32", "--batch-size", "16"]


def mte(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "mte", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def test_help_explains_every_option():
    out = mte("run", "--help").stdout
    for flag in ("--task", "--method", "--seed", "--model", "--data-dir", "--tau", "--sparsity", "--out", "--lr"):
        assert flag in out


@pytest.mark.parametrize("command", ["run", "sweep", "report", "tune-tau", "ui"])
def test_help_reads_whole_at_80_columns(command):
    """Nothing cut (an option's name, its default, its choices), nothing wider than the terminal, no word split at
    its hyphens, no value shown for a flag."""
    import os

    import typer

    from mte.cli import app

    params = typer.main.get_command(app).commands[command].params
    out = mte(command, "--help", env=os.environ | {"COLUMNS": "80"}).stdout
    lines = out.splitlines()
    assert [ln for ln in lines if len(ln) > 80] == []
    assert "…" not in out and "<bool>" not in out
    assert [ln for ln in lines if ln.rstrip().endswith("-") and not ln.rstrip().endswith(" -")] == []
    words = set(out.replace("/", " ").replace(",", " ").split())
    for p in params:
        for name in [*p.opts, *p.secondary_opts]:
            assert name in words, name
    for line in lines:
        if "default: " in line and "[" in line:
            assert "]" in line.split("default: ", 1)[1], line  # a default is never broken over two lines
    if command == "report":
        assert "--headline [accuracy|f1|pearson|spearman|matthews]" in out


def test_run_prints_metrics_and_reuses_on_rerun(tmp_path, generated_glue):
    args = ["run", "--method", "baseline", "--data-dir", str(generated_glue), "--out", str(tmp_path / "s"), *TINY]
    first = mte(*args)
    assert first.returncode == 0, first.stderr
    assert "accuracy" in first.stdout and "stored in" in first.stdout
    second = mte(*args)
    assert second.returncode == 0 and "loaded from" in second.stdout


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    root = write_mrpc(tmp_path_factory.mktemp("bad"))
    text = (root / "MRPC" / "train.tsv").read_text().splitlines()
    text[5] = "1\t5\t6\tonly one sentence"
    (root / "MRPC" / "train.tsv").write_text("\n".join(text) + "\n")
    empty = write_mrpc(tmp_path_factory.mktemp("empty"))
    (empty / "MRPC" / "dev.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
    return root, empty


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "mrcp"], "unknown task 'mrcp'"),
        (["--method", "lottery"], "unknown method 'lottery'"),
        (["--method", "random-lt", "--tau", "-0.1"], "tau must be >= 0"),
        (["--method", "base-lt", "--sparsity", "1.0"], "sparsity must be in [0, 1)"),
        (["--data-dir", "/nonexistent/glue"], "does not exist"),
        (["BAD"], "train.tsv:6: expected at least 5 tab-separated fields, found 4"),
        (["EMPTY"], "no examples in the dev split"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, generated_glue, bad_data, extra, message):
    data = {"BAD": bad_data[0], "EMPTY": bad_data[1]}
    data_dir = data.get(extra[0], generated_glue)
    extra = [] if extra[0] in data else extra
    args = ["run", "--data-dir", str(data_dir), "--out", str(tmp_path / "s"), *TINY, *extra]
    if "--data-dir" in extra:
        args = ["run", "--out", str(tmp_path / "s"), *TINY, *extra]
    result = mte(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s" / "runs").exists()  # nothing stored


def test_prior_mask_from_another_model_is_refused(tmp_path, generated_glue):
    import torch

    from mte.masks import Mask

    path = tmp_path / "foreign.safetensors"
    Mask({"encoder.w": torch.ones(3, 3, dtype=torch.bool)}, model="roberta-base").save(path)
    result = mte("run", "--method", "active-lt", "--seed", "1", "--prior-mask", str(path), "--data-dir",
                 str(generated_glue), "--out", str(tmp_path / "s"), *TINY)
    assert result.returncode == 2 and "prior mask does not fit this model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
