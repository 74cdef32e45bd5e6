"""What `mte sweep` and `mte tune-tau` take, declared once as dataclasses (their flags are generated from these;
presets are instances of `SweepOptions`; a sweep's options are recorded on its parent run with `to_dict`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mte import methods as registry
from mte.errors import MteError
from mte.fields import check, from_dict, group, hp, to_dict
from mte.hparams import RunSpec
from mte.methods import dry
from mte.paths import Paths
from mte.store import check_root
from sweeps.cluster import RayOptions
from sweeps.inputs import check_writable_folder
from tracking.options import TrackingOptions

REPORT_DIR = Path("mte-report")
EXECUTORS = ("ray", "local")
SEARCHES = ("optuna", "hyperopt", "random", "grid")
OBJECTIVES = ("ensemble", "single")
TUNE_ON = ("train-holdout", "dev")


@dataclass(frozen=True)
class SweepOptions:
    """One sweep: the shared hyperparameters (`spec`; method and seed are set per trial), methods × seeds."""

    PANEL: ClassVar[str] = "Sweep"
    spec: RunSpec = group(RunSpec)
    methods: tuple[str, ...] = hp(registry.PAPER, "Methods: 'all' (every loaded method, plugins' too) or a comma list.",
                                  choices=registry.names)
    seeds: int = hp(20, "Seeds 0..N-1 of every method; one Ray Tune trial each.")
    tau_from_tuning: str | None = hp(None, "Use the best τ that `mte tune-tau` recorded in MLflow for this TASK "
                                           "(e.g. mrpc: the paper tunes τ once on MRPC and reuses it for every "
                                           "task), this model and each regularised method, instead of --tau; or "
                                           "the τ of the given tune-tau runs (comma list of run ids). Not with "
                                           "--tau, which replaces a preset's or a resumed sweep's tuning.",
                                     metavar="TASK|RUN_ID[,...]")
    preset: str | None = hp(None, "Named option set (sweeps/presets.py): quick (MiniLM, 3 seeds, a real MRPC "
                                  "subset) or paper (the paper's protocol). Options given here still win.",
                            metavar="[quick|paper]")
    paths: Paths = group(Paths)
    tracking: TrackingOptions = group(TrackingOptions)
    ray: RayOptions = group(RayOptions)
    executor: str = hp("ray", "ray: trials as Ray Tune trials (a local Ray, or --ray-address); local: worker "
                              "processes on this machine, without Ray (a GPU box without Ray or a cluster), as "
                              "many as --max-concurrent, else as the GPUs (--gpus-per-trial) or CPUs "
                              "(--cpus-per-trial) hold.", choices=EXECUTORS)
    system_metrics: bool = hp(False, "Sample each trial's CPU, memory (and GPU) use into its MLflow run while it "
                                      "trains (MLflow's system metrics).")
    epoch_curves: bool = hp(False, "Evaluate dev after every epoch of each fine-tune (per-epoch curves in MLflow), "
                                    "not only after the last; the train loss is recorded every epoch either way.")
    report: bool = hp(True, "Write the report (mte.analysis) from the recorded runs when every trial finished.")
    report_dir: Path = hp(REPORT_DIR, "Reports go to <dir>/<sweep hash>/.")

    def validate(self) -> SweepOptions:
        check(self)
        if self.seeds < 1:
            raise MteError(f"--seeds must be >= 1, got {self.seeds}")
        if not self.methods:
            raise MteError("--methods is empty; give 'all' or a comma list of: " + ", ".join(registry.names()))
        self.tracking.validate()
        check_root(self.paths.store)
        check_writable_folder(self.paths.store, "--out")
        if self.report:
            check_writable_folder(self.report_dir, "--report-dir")
        self.ray.validate()
        if self.executor == "local" and self.ray.ray_address:
            raise MteError("--executor local runs trials on this machine without Ray; --ray-address needs "
                           "--executor ray")
        return self

    def recorded(self) -> dict[str, Any]:
        """What `--resume` reads back from the parent run: everything but where to track and run."""
        d = to_dict(self)
        for name in ("tracking", "ray", "executor"):  # where it runs, not what
            d.pop(name)
        d["spec"].pop("seed")
        d["paths"] = {k: str(Path(v).resolve()) if v else None for k, v in d["paths"].items()}
        return d

    @classmethod
    def from_recorded(cls, d: dict[str, Any]) -> SweepOptions:
        if "hparams" in d:  # recorded before options were dataclasses
            d = {"spec": d["hparams"], "methods": tuple(d["methods"].split(",")), "seeds": d["seeds"],
                 "paths": {"data_dir": d.get("data_dir"), "store": d["store"]}}
        return from_dict(cls, d)


@dataclass(frozen=True)
class TauOptions:
    """One τ search: the shared hyperparameters (τ, seed and holdout are set per trial) and the search."""

    PANEL: ClassVar[str] = "τ search"
    spec: RunSpec = group(RunSpec)
    search: str = hp("optuna", "Search algorithm: optuna (TPE), hyperopt (TPE), random (log-uniform) or grid "
                               "(log-spaced).", choices=SEARCHES)
    num_samples: int = hp(8, "τ samples (trials); with --search grid, grid points.")
    tau_min: float = hp(1e-6, "Smallest τ searched (log scale).")
    tau_max: float = hp(1e-2, "Largest τ searched (log scale).")
    seeds_per_sample: int = hp(3, "K: seeds 0..K-1 trained for every τ.")
    objective: str = hp("ensemble", "ensemble: score of the K-seed ensemble; single: mean score of the K seeds.",
                        choices=OBJECTIVES)
    tune_on: str = hp("train-holdout", "train-holdout: a seeded fraction of train (dev stays unseen); dev: the dev "
                                       "split.", choices=TUNE_ON)
    holdout_fraction: float = hp(0.1, "Fraction of train held out (--tune-on train-holdout).")
    early_stop: bool = hp(True, "ASHA: stop a poor τ after an IMP round.")
    search_seed: int = hp(0, "Seed of the search algorithm's sampler.")
    top: int = hp(5, "Print the best N samples.")
    paths: Paths = group(Paths)
    tracking: TrackingOptions = group(TrackingOptions)
    ray: RayOptions = group(RayOptions)
    report_dir: Path = hp(REPORT_DIR, "The plot goes to <dir>/tune-tau/.")

    @property
    def milestones(self) -> int:
        """Objective reports per sample (ASHA's max_t)."""
        method = self.spec.method.declared
        per_seed = len(dry.plan(method, self.spec.method, 0))
        return per_seed * (self.seeds_per_sample - 1 if method.chain else 1)

    @property
    def headline(self) -> str:
        """The metric the objective scores: the task's first."""
        return self.spec.task.metrics[0]

    @property
    def tuned_on(self) -> str:
        """Where the objective is measured, in words."""
        if self.tune_on == "dev":
            return "DEV (dev is then not held out from tuning)"
        return f"a {self.spec.data.holdout:.0%} holdout of train"

    def validate(self) -> TauOptions:
        """Everything checkable before Ray or a run exists; returns the options with the spec resolved (its
        holdout set from --tune-on). The cheap checks come first, so a typo fails before torch is imported."""
        check(self)
        for name, value in (("--tau-min", self.tau_min), ("--tau-max", self.tau_max)):
            if not value > 0:
                raise MteError(f"{name} must be a positive number, got {value:g}")
        if self.tau_min >= self.tau_max:
            raise MteError(f"--tau-min ({self.tau_min:g}) must be smaller than --tau-max ({self.tau_max:g})")
        if self.tune_on == "train-holdout" and not (0.0 < self.holdout_fraction < 1.0):
            raise MteError(f"--holdout-fraction must be in (0, 1), got {self.holdout_fraction:g}")
        method = self.spec.method.method
        tau_methods = [m.name for m in registry.all_methods() if m.uses_tau]
        if not self.spec.method.declared.uses_tau:
            raise MteError(f"--method: τ is used only by {' and '.join(tau_methods)}, got {method!r}")
        if self.num_samples < 1:
            raise MteError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.search == "grid" and self.num_samples < 2:
            raise MteError("--search grid needs --num-samples >= 2 (the grid's points)")
        if self.seeds_per_sample < 1:
            raise MteError(f"--seeds-per-sample must be >= 1, got {self.seeds_per_sample}")
        if self.spec.method.declared.chain and self.seeds_per_sample < 2:
            raise MteError(f"{method} needs --seeds-per-sample >= 2: its seed 0 has no earlier masks, so τ does not "
                           "act on it")
        if self.objective == "ensemble" and self.seeds_per_sample < 2:
            raise MteError("--objective ensemble needs --seeds-per-sample >= 2 (or use --objective single)")
        self.tracking.validate()
        check_root(self.paths.store)
        check_writable_folder(self.paths.store, "--out")
        check_writable_folder(self.report_dir, "--report-dir")
        self.ray.validate()
        holdout = self.holdout_fraction if self.tune_on == "train-holdout" else 0.0
        spec = dataclasses.replace(self.spec, data=dataclasses.replace(self.spec.data, holdout=holdout))
        return dataclasses.replace(self, spec=spec.resolved())
