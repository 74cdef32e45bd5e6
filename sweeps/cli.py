"""`mte sweep` and `mte ui`: parse options, apply a preset or a recorded sweep, call the runner."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from mte.cli_options import (
    ARTIFACT_LOCATION_OPTION,
    DATA_DIR_OPTION,
    EXPERIMENT_OPTION,
    STORE_OPTION,
    TRACKING_URI_OPTION,
    hparam_options,
)
from mte.errors import MteError
from mte.hparams import HPARAM_GROUPS, DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from sweeps.cluster import RayOptions

console = Console(stderr=True)
GROUPS = HPARAM_GROUPS


@hparam_options(*GROUPS, RayOptions, exclude=("method", "tau"))
def sweep(
    ctx: typer.Context,
    methods: str = typer.Option("all", "--methods", help="'all' or a comma list of: baseline, bagging, base-lt, "
                                                          "active-lt, random-lt."),
    seeds: int = typer.Option(20, "--seeds", help="Seeds 0..N-1 of every method; one Ray Tune trial each."),
    preset: str | None = typer.Option(None, "--preset", help="Named option set: 'quick' (MiniLM, 3 seeds, "
                                                               "a real MRPC subset; ~6 min on 2 CPU cores)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the experiment's latest sweep with its "
                                                        "recorded options (options given here still win)."),
    data_dir: Path | None = DATA_DIR_OPTION,
    store: Path = STORE_OPTION,
    experiment: str = EXPERIMENT_OPTION,
    tracking_uri: str | None = TRACKING_URI_OPTION,
    artifact_location: str | None = ARTIFACT_LOCATION_OPTION,
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report (mte.analysis) from "
                                                                   "the recorded runs when every trial finished."),
    report_dir: Path = typer.Option(Path("mte-report"), "--report-dir", help="Reports go to <dir>/<sweep hash>/."),
    tau: str = typer.Option(str(MethodHparams().tau), "--tau", rich_help_panel="Method",
                            help="L1 coefficient τ of active-lt and random-lt, or 'best': the τ that `mte tune-tau` "
                                 "recorded for this task, model and method (read from --tracking-uri)."),
    hparams: dict | None = None,
) -> None:
    """Run many seeds of many methods as Ray Tune trials, recorded in MLflow; rerunning resumes."""
    from sweeps.plan import parse_methods
    from sweeps.presets import preset as preset_values
    from sweeps.runner import SweepOptions, run_sweep
    from sweeps.trial import TEST_CRASH_ENV
    from tracking.tau import tau_for_sweep

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    assert hparams is not None
    values: dict[str, Any] = {f.name: getattr(hparams[g], f.name) for g in GROUPS for f in dataclasses.fields(g)
                              if f.name != "method"}
    values |= {"tau": tau, "methods": methods, "seeds": seeds, "data_dir": data_dir, "store": store}
    layers = [preset_values(preset)]
    if resume:
        layers.insert(0, _recorded(experiment, tracking_uri))
    for name in values:
        source = ctx.get_parameter_source(name)
        if source is None or source.name == "DEFAULT":  # typer vendors click: compare by name
            for layer in layers:
                if name in layer:
                    values[name] = layer[name]
                    break
    values["tau"], tau_source = tau_for_sweep(values["tau"], tracking_uri, values["task"], values["model"],
                                              parse_methods(values["methods"]))
    if tau_source:
        console.print(f"--tau best: {tau_source}", highlight=False)
    built = {g: g(**{f.name: values[f.name] for f in dataclasses.fields(g) if f.name != "method"})
             for g in GROUPS}
    base = RunSpec(built[DataHparams], built[ModelHparams], built[TrainHparams], built[MethodHparams], 0)
    options = SweepOptions(
        base=base, methods=parse_methods(values["methods"]), seeds=int(values["seeds"]),
        data_dir=Path(values["data_dir"]) if values["data_dir"] else None, store=Path(values["store"]),
        experiment=experiment, tracking_uri=tracking_uri, artifact_location=artifact_location,
        ray=hparams[RayOptions], test_crash=os.environ.get(TEST_CRASH_ENV))
    outcome = run_sweep(options)
    if outcome.interrupted:
        raise KeyboardInterrupt
    if outcome.failed:
        raise typer.Exit(1)
    if report:
        from sweeps.report import run_report

        run_report(experiment, outcome.tracking_uri, outcome.parent_run_id, report_dir / outcome.sweep_hash,
                   options.methods, options.seeds)
    console.print(f"browse: mte ui --tracking-uri {outcome.tracking_uri}", highlight=False)


def _recorded(experiment: str, tracking_uri: str | None) -> dict[str, Any]:
    """The options of the experiment's latest sweep, flattened to option names."""
    from tracking.experiment import find_parent, recorded_config
    from tracking.uri import check_reachable, resolve_tracking_uri

    client = check_reachable(resolve_tracking_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment)
    parent = find_parent(client, exp.experiment_id) if exp else None
    if parent is None:
        raise MteError(f"--resume: experiment {experiment!r} has no sweep to resume")
    config = recorded_config(parent)
    flat = {k: v for group in config["hparams"].values() for k, v in group.items() if k != "method"}
    return flat | {k: config[k] for k in ("methods", "seeds", "data_dir", "store")}


def ui(
    tracking_uri: str | None = TRACKING_URI_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 127.0.0.1 keeps it local."),
    port: int = typer.Option(5000, "--port", help="Port of the UI."),
) -> None:
    """Start the MLflow UI against a sweep's tracking store (the working directory's by default)."""
    from tracking.uri import default_artifact_root, resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        console.print(f"{uri} is a tracking server: its UI is at that address", highlight=False)
        return
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise MteError(f"no tracking store at {db}; run `mte sweep` here first or pass --tracking-uri")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    root = default_artifact_root(uri)
    if root is not None:
        cmd += ["--default-artifact-root", root.as_uri()]
    console.print(f"MLflow UI at http://{host}:{port} for {uri} (Ctrl-C stops it)", highlight=False)
    sys.stdout.flush()
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # GenAI job workers: not needed here
    os.execv(sys.executable, cmd)
