"""`mte sweep`: many seeds of many methods as Ray Tune trials recorded in MLflow; rerunning resumes."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from mte import fields
from mte.cli import interrupts
from mte.cli.options import Given, flag, options
from mte.errors import MteError
from sweeps.options import SweepOptions

if TYPE_CHECKING:
    from sweeps.plan import SweepPlan

console = Console(stderr=True)


@options(o=SweepOptions, exclude=("spec.method.method", "spec.seed"), plugins=True)
def sweep(
    o: SweepOptions,
    given: Given,
    resume: bool = typer.Option(False, "--resume", metavar="",
                                help="Continue the experiment's latest sweep with its recorded options (options given "
                                     "here still win; not with --preset)."),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="",
                                 help="Print the options the sweep would run with (after the preset or the recorded "
                                      "sweep) and where each came from, which τ applies, and how many trials and "
                                      "fine-tunes it would run; run nothing."),
) -> None:
    """Run many seeds of many methods as Ray Tune trials, recorded in MLflow; rerunning resumes."""
    from sweeps.presets import preset as preset_options
    from sweeps.report import ReportOptions, run_report
    from sweeps.runner import run_sweep

    if resume and o.preset:
        raise MteError("--resume continues a sweep with its recorded options, which --preset would not change; "
                       "drop --preset (options given with --resume still win)")
    if _given(given, TAU) and _given(given, TAU_FROM_TUNING) and o.tau_from_tuning:
        raise MteError("--tau and --tau-from-tuning both set τ; give one of them")
    base = _recorded(o) if resume else preset_options(o.preset)
    o = fields.overlay(base, o, given["o"])
    if _given(given, TAU) and o.tau_from_tuning:  # the preset's or the recorded sweep's tuning: --tau wins
        o = dataclasses.replace(o, tau_from_tuning=None)
        given["o"].add(TAU_FROM_TUNING)  # unset by the command line
    if dry_run:
        origin = "recorded sweep" if resume else f"preset {o.preset}" if o.preset else "default"
        plan = _check(o)
        _print_options(o, given["o"], base, origin)
        _print_preview(o, plan, _source(TAU_FROM_TUNING if o.tau_from_tuning else TAU, o, given["o"], base, origin))
        return
    interrupts.check()
    outcome = run_sweep(o)
    if outcome.interrupted:
        raise KeyboardInterrupt
    if outcome.failed:
        raise typer.Exit(1)
    if o.report and o.seeds < 2:
        console.print("report: skipped (ensembles need at least 2 seeds)")
    elif o.report:
        run_report(dataclasses.replace(o.tracking, tracking_uri=outcome.tracking_uri),
                   ReportOptions(run_ids=(outcome.parent_run_id,), out=o.report_dir / outcome.sweep_hash),
                   methods=o.methods, seeds=o.seeds)
    _print_links(o, outcome.tracking_uri)


TAU, TAU_FROM_TUNING = ("spec", "method", "tau"), ("tau_from_tuning",)


def _given(given: Given, path: tuple[str, ...]) -> bool:
    return path in given["o"]


def _check(o: SweepOptions) -> SweepPlan:
    """What the sweep itself checks before it starts anything (a dry run must not list what would be refused)."""
    from sweeps.plan import SweepPlan
    from sweeps.session import preflight

    o = o.validate()
    preflight(o.ray, o.tracking.tracking_uri)
    return SweepPlan.build(o.spec, o.methods, o.seeds, o.paths.data_dir)


def _print_preview(o: SweepOptions, plan: SweepPlan, origin: str) -> None:
    """Which τ applies and how much work the sweep is, below the options (read only: nothing is created)."""
    from sweeps.preview import recorded_hashes, tau_lines, work_lines
    from tracking.uri import resolve_tracking_uri

    uri = resolve_tracking_uri(o.tracking.tracking_uri)
    tuned, lines = tau_lines(o, plan, uri, origin)
    lines += work_lines(tuned or plan, recorded_hashes(o, tuned, uri) if tuned else None)
    out = Console(width=160)
    for line in lines:
        out.print(line, highlight=False, soft_wrap=True)


def _print_links(o: SweepOptions, uri: str) -> None:
    from tracking.ui import links, ui_base
    from tracking.uri import check_reachable

    local = not uri.startswith(("http://", "https://"))
    if local:
        experiment = "" if o.tracking.experiment == "mte" else f" --experiment {o.tracking.experiment}"
        console.print(f"browse: mte ui --tracking-uri {uri}{experiment}", highlight=False, soft_wrap=True)
    for line in links(check_reachable(uri), ui_base(uri), o.tracking.experiment):
        console.print(("  then " if local else "") + line, highlight=False, soft_wrap=True)


def _print_options(o: SweepOptions, given: set, base: SweepOptions, origin: str) -> None:
    table = Table(title="mte sweep would run with", box=None)
    for col in ("option", "value", "from"):
        table.add_column(col)
    for leaf in fields.leaves(SweepOptions, exclude=("spec.method.method", "spec.seed")):
        value = fields.get(o, leaf.path)
        source = _source(leaf.path, o, given, base, origin)
        if leaf.meta.get("expand"):  # a plugin's parameters, one row each
            for name, (default, _) in leaf.meta["expand"]().items():
                found = dict(value)
                table.add_row("--" + name.replace("_", "-"), str(found.get(name, default)),
                              source if name in found else "default")
            continue
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        if leaf.path == TAU and o.tau_from_tuning:
            source += f"; not used: --tau-from-tuning {o.tau_from_tuning} sets τ"
        if leaf.path == TAU_FROM_TUNING and value is None and base.tau_from_tuning:
            source += f" (--tau replaces the {origin}'s {base.tau_from_tuning})"
        if leaf.path == ("spec", "train", "lr") and value is None:
            shown = f"the model's default, {o.spec.resolved().train.lr:g}"
        table.add_row(flag(leaf), str(shown), source)
    Console(width=160).print(table)


def _source(path: tuple[str, ...], o: SweepOptions, given: set, base: SweepOptions, origin: str) -> str:
    """Where an option's value comes from: the command line, the preset or recorded sweep (`origin`), or the
    default."""
    default = fields.get(SweepOptions(), path)
    if path in given:
        return "command line"
    return origin if fields.get(o, path) != default or fields.get(base, path) != default else "default"


def _recorded(o: SweepOptions) -> SweepOptions:
    """The options of the experiment's latest sweep (tracking and Ray options stay as given)."""
    from mte import plugins
    from tracking.experiment import find_parent, recorded_config, recorded_plugins
    from tracking.uri import check_reachable, resolve_tracking_uri

    client = check_reachable(resolve_tracking_uri(o.tracking.tracking_uri, must_exist=True))
    exp = client.get_experiment_by_name(o.tracking.experiment)
    parent = find_parent(client, exp.experiment_id) if exp else None
    if parent is None:
        raise MteError(f"--resume: experiment {o.tracking.experiment!r} has no sweep to resume")
    try:  # its methods may come from plugins: loaded as the sweep loaded them, unless given again
        plugins.load(recorded_plugins(parent))
    except MteError as e:
        raise MteError(f"--resume: the sweep's {e} (give the plugin with --plugin)") from None
    recorded = SweepOptions.from_recorded(recorded_config(parent)).validate()
    paths = recorded.paths  # written by whoever can write the tracking store: checked like user input, and shown
    console.print(f"--resume: sweep {parent.info.run_name} (run {parent.info.run_id}) with its recorded store "
                  f"{paths.store} and data {paths.data_dir or 'from the hub'} (--out/--data-dir override them)",
                  highlight=False, soft_wrap=True)
    return fields.build(SweepOptions, {("tracking",): o.tracking, ("ray",): o.ray}, recorded)
