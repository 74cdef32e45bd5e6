"""What `mte sweep --dry-run` prints below its options: which τ the sweep would use, and how much work it is.

Everything here only reads: no tracking database, experiment or run is created to answer.
"""

from __future__ import annotations

from mte import methods
from sweeps.options import SweepOptions
from sweeps.plan import SweepPlan


def tau_lines(o: SweepOptions, plan: SweepPlan, uri: str, origin: str) -> tuple[SweepPlan | None, list[str]]:
    """The plan with the τ it would use (None: the tuning it names is not recorded yet), and lines saying so."""
    from mte.errors import MteError
    from tracking.tau import tuned_tau_at

    if not o.tau_from_tuning:
        if any(methods.get(m).uses_tau for m in plan.methods):
            return plan, [f"τ: --tau {plan.base.method.tau:g} ({origin})"]
        return plan, ["τ: not used (no regularised method)"]
    head = f"τ: from --tau-from-tuning {o.tau_from_tuning} ({origin}), not --tau"
    try:
        found = tuned_tau_at(uri, o.tau_from_tuning, plan.base.model.model, plan.methods)
    except MteError as e:
        return None, [f"{head}: none recorded yet ({e}); the sweep would stop there, before it starts anything"]
    return plan.with_taus({t.method: t.tau for t in found}), [head + ":"] + [f"  {t.method}: {t.description}"
                                                                           for t in found]


def recorded_hashes(o: SweepOptions, plan: SweepPlan, uri: str) -> dict[str, str]:
    """The unit hashes this sweep (these options) already holds as FINISHED runs; none where there is no store."""
    from tracking.experiment import find_parent
    from tracking.trial_runs import finished_hashes
    from tracking.uri import check_reachable, sqlite_path

    path = sqlite_path(uri)
    if path is not None and not path.exists():
        return {}
    client = check_reachable(uri)
    exp = client.get_experiment_by_name(o.tracking.experiment)
    parent = find_parent(client, exp.experiment_id, plan.sweep_hash) if exp else None
    return finished_hashes(client, exp.experiment_id, parent.info.run_id) if parent else {}


def work_lines(plan: SweepPlan, finished: dict[str, str] | None) -> list[str]:
    """Trials and fine-tunes of the whole sweep, and what is left of them given the units already `finished`
    (None: not known, because τ is not)."""
    trials = plan.trials(set())
    chains = [t for t in trials if methods.get(t["method"]).chain]
    units = len(plan.units)
    distinct, total = plan.fine_tunes()
    shared = (f", {total} counted per method (BASELINE seed s is round 0 of BASE-LT seed s; an ACTIVE-LT chain's "
              "first seed is BASE-LT's)") if total != distinct else ""
    kinds = ", ".join(methods.label(m) for m in dict.fromkeys(t["method"] for t in chains))
    chain_note = (f": {len(chains)} {kinds} chain(s) of {', '.join(str(len(t['seeds'])) for t in chains)} seeds "
                  f"and {len(trials) - len(chains)} single-seed trials") if chains else ""
    lines = [f"work: {len(trials)} trials{chain_note}, for {units} (method, seed) units; "
             f"{distinct} distinct fine-tunes{shared}"]
    if finished is None:
        lines.append("recorded: not known until τ is (this sweep is named by its τ)")
    else:
        done = sum(plan.unit_hash(u) in finished for u in plan.units) if finished else 0
        lines.append(f"recorded: {done} of {units} units finished in this sweep's MLflow runs; "
                     f"{len(plan.trials(set(finished)))} trials left to run")
    return lines

