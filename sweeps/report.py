"""The report stage: sweeps read back from MLflow (not the local store, so the report shows exactly what was
recorded), analysed by `mte.analysis` with the settings that produced them in the header, written to a folder
and attached to each sweep's parent run. Several sweeps of different tasks make one report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console

from mte.analysis.options import AnalysisOptions
from mte.errors import MteError
from mte.fields import hp
from tracking.options import TrackingOptions

console = Console(stderr=True, soft_wrap=True)  # piped to a log, a line stays one line


@dataclass(frozen=True)
class ReportOptions:
    PANEL: ClassVar[str] = "Report"
    run_ids: tuple[str, ...] | None = hp(None, "The sweep's parent run; several (a comma list, one sweep per task) "
                                               "make one report with their tasks side by side. Default: the "
                                               "experiment's latest sweep.", flag="--run-id", metavar="ID[,ID...]")
    tasks: tuple[str, ...] | None = hp(None, "Report the experiment's latest sweep of each of these tasks, side by "
                                             "side (e.g. mrpc,sts-b).", metavar="TASK[,TASK...]")
    out: Path = hp(Path("mte-report/report"), "Folder for report.md/html, CSVs and PNGs.")
    log: bool = hp(True, "Also log the report as artifacts of the sweeps' parent runs.")
    store: Path | None = hp(None, "Report a sweep straight from this result store (its runs/ folder), without "
                                  "MLflow: e.g. one made by `mte sweep --executor local` on a machine without a "
                                  "tracking server.", metavar="PATH")
    sweep: str | None = hp(None, "With --store: the sweep to report, by (a prefix of) its hash, when the store "
                                 "holds several.", metavar="HASH")


def run_report(tracking: TrackingOptions, report: ReportOptions, analysis: AnalysisOptions = AnalysisOptions(),
               methods: tuple[str, ...] | None = None, seeds: int | None = None) -> Any:
    """Read the sweeps back, write their report to `report.out` (and log it); `methods`/`seeds`: what a finished
    sweep will hold, so a partial one lists what is missing (default: what was recorded)."""
    from mte.analysis import ResultSet, analyse, write_report
    analysis = analysis.validate()
    if report.out.exists() and not report.out.is_dir():
        raise MteError(f"--out {report.out} is a file; the report needs a folder")
    if report.store is not None:
        return store_report(report, analysis)
    from tracking.load import load_sweep, log_report, log_report_metrics, sweep_parents
    from tracking.uri import check_reachable, resolve_tracking_uri

    if report.sweep is not None:
        raise MteError("--sweep chooses a sweep of --store; with MLflow, choose one with --run-id")
    parents = sweep_parents(tracking.experiment, tracking.tracking_uri, report.run_ids, report.tasks)
    analyses = []
    for parent in parents:
        results = load_sweep(tracking.experiment, tracking.tracking_uri, parent.info.run_id)
        if not results:
            raise MteError(f"sweep run {parent.info.run_id} of experiment {tracking.experiment!r} has no finished "
                           "trials yet")
        recorded = sorted({r.spec.seed for r in results})
        expected = range(seeds) if seeds is not None else range(max(recorded) + 1)
        context, warnings = header(parent, results)
        analyses.append(analyse(ResultSet.from_seed_results(results), analysis, expected, methods, context,
                                warnings))
    tasks = [a.task.name for a in analyses]
    if len(set(tasks)) < len(tasks):
        raise MteError(f"one report takes one sweep per task; these sweeps repeat a task: {', '.join(tasks)}")
    summary = write_report(analyses, report.out)
    if report.log:
        client = check_reachable(resolve_tracking_uri(tracking.tracking_uri, must_exist=True))
        for parent, a in zip(parents, analyses, strict=True):
            log_report(tracking.experiment, tracking.tracking_uri, report.out, parent.info.run_id)
            log_report_metrics(client, parent.info.run_id, a)
    where = "; also in the parent run artifacts, report/" if report.log else ""
    console.print(f"report: {summary.markdown}, {summary.html} ({', '.join(tasks)}: "
                  f"{sum(len(s) for a in analyses for s in a.seeds.values())} runs{where})", highlight=False)
    return summary


def store_report(report: ReportOptions, analysis: AnalysisOptions) -> Any:
    """`run_report` for a sweep read from a result store (`sweeps.stored`): nothing is read from or logged to
    MLflow, so where τ came from and the versions are not known here (they are recorded in MLflow)."""
    from mte.analysis import ResultSet, analyse, write_report
    from sweeps.stored import stored_sweep

    if report.run_ids or report.tasks:
        raise MteError("--store reports one sweep of the store; --run-id and --tasks choose sweeps in MLflow")
    found = stored_sweep(report.store, report.sweep)
    results = list(found.results.values())
    newest = max(f.stat().st_mtime for f in found.folders.values())
    context = {"sweep": f"{found.sweep_hash} from the store {report.store.resolve()}",
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(newest))} | settings(results)
    context["τ"] = f"τ = {results[0].spec.method.tau:g} (its source is recorded in MLflow, not in the store)"
    a = analyse(ResultSet.from_seed_results(results), analysis, range(found.plan.seeds), None, context, [])
    summary = write_report([a], report.out)
    console.print(f"report: {summary.markdown}, {summary.html} ({a.task.name}: {len(results)} runs from the store "
                  f"{report.store})", highlight=False)
    return summary


def settings(results: list) -> dict[str, str]:
    """The hyperparameters behind a sweep's results, in words (the report's header)."""
    spec = results[0].spec
    sizes = results[0].data_sizes
    train = f"{sizes['train']} examples" if sizes.get("train") else (
        f"the first {spec.data.train_limit}" if spec.data.train_limit else "all")
    return {
        "model": spec.model.model,
        "train": train + (f"; {spec.data.holdout:.0%} held out" if spec.data.holdout else ""),
        "fine-tune": f"{spec.train.epochs} epoch{'s' if spec.train.epochs != 1 else ''}, "
                     f"batch {spec.train.batch_size}, lr {spec.train.lr:g} (linear decay to 0 in each fine-tune), "
                     f"max length {spec.data.max_length}, dropout {spec.model.dropout:g}, "
                     f"{'length-grouped batches' if spec.train.group_by_length else 'random batches (the paper)'}",
        "IMP": f"{spec.method.rounds} round(s) to {spec.method.sparsity:.0%} sparsity",
    }


def header(parent: Any, results: list) -> tuple[dict[str, str], list[str]]:
    """The settings that produced a sweep's results, for the report's header, and the warnings they call for."""
    from tracking.experiment import PRESET_TAG, TAU_SOURCE_TAG
    from tracking.provenance import GIT_COMMIT, PACKAGES, VERSION_TAG

    spec = results[0].spec
    tags = parent.data.tags
    context = {
        "sweep": f"{parent.info.run_name} (run {parent.info.run_id})",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(parent.info.start_time / 1000)),
        "preset": tags.get(PRESET_TAG, "none"),
    } | settings(results)
    warnings = []
    source = json.loads(tags[TAU_SOURCE_TAG]) if TAU_SOURCE_TAG in tags else None
    tau = f"τ = {spec.method.tau:g}"
    if source and source.get("kind") == "tuning":
        taus = source.get("taus") or {}
        tau = ", ".join(f"{m}: τ = {t:g}" for m, t in taus.items()) or tau
        context["τ"] = (f"{tau}, tuned by `mte tune-tau` on {source.get('task')} ({source.get('tune_on')}), run "
                        f"{source.get('run_id')}")
        if source.get("tune_on") == "dev" and source.get("task") == spec.data.task:
            warnings.append(f"τ was tuned on the dev split of {spec.data.task}, which this report scores: its "
                            f"regularised methods had dev in their tuning")
    else:
        context["τ"] = f"{tau} (given, not tuned)"
    names = [*PACKAGES, "python"]
    if any(VERSION_TAG.format(n) in tags for n in names):
        context["versions"] = ", ".join(f"{n} {tags[VERSION_TAG.format(n)]}" for n in names
                                        if VERSION_TAG.format(n) in tags)
    if GIT_COMMIT in tags:
        context["code"] = f"git commit {tags[GIT_COMMIT]}"
    return context, warnings
