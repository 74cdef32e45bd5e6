"""A sweep's plan: units, trial order, ACTIVE-LT chains (one, or one per seed group) and per-method τ."""

import dataclasses

from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from mte.methods import PAPER as METHODS
from sweeps.plan import SweepPlan, Unit

BASE = RunSpec(DataHparams(train_limit=16, eval_limit=8), ModelHparams(), TrainHparams(epochs=1), MethodHparams())


def test_one_active_lt_chain_over_all_seeds_queued_first(generated_glue):
    plan = SweepPlan.build(BASE, METHODS, 4, generated_glue)
    trials = plan.trials(set())
    assert trials[0]["name"] == "active-lt-chain" and trials[0]["seeds"] == [0, 1, 2, 3]
    assert len(trials) == 1 + 4 * 4
    done = {plan.unit_hash(Unit("active-lt", s)) for s in (0, 1, 2)}
    (chain,) = [t for t in plan.trials(done) if t["method"] == "active-lt"]
    assert chain["seeds"] == [0, 1, 2, 3] and chain["todo"] == [3]  # seeds 0–2 only supply their masks


def test_active_lt_chains_per_group_run_side_by_side(generated_glue):
    spec = dataclasses.replace(BASE, method=MethodHparams(active_chain="group"))
    plan = SweepPlan.build(spec, ("baseline", "active-lt"), 20, generated_glue)
    chains = [t for t in plan.trials(set()) if t["method"] == "active-lt"]
    assert [(t["name"], t["seeds"]) for t in chains] == [("active-lt-chain-0", list(range(10))),
                                                         ("active-lt-chain-10", list(range(10, 20)))]
    assert plan.sweep_hash != SweepPlan.build(BASE, ("baseline", "active-lt"), 20, generated_glue).sweep_hash


def test_tuned_tau_per_method(generated_glue):
    plan = SweepPlan.build(BASE, METHODS, 2, generated_glue)
    same = plan.with_taus({"active-lt": 3e-4, "random-lt": 3e-4})
    assert same.taus == {} and same.base.method.tau == 3e-4  # one τ: the sweep's
    assert same.sweep_hash == SweepPlan.build(BASE.with_method(tau=3e-4), METHODS, 2, generated_glue).sweep_hash
    each = plan.with_taus({"active-lt": 1e-4, "random-lt": 5e-4})
    assert each.spec(Unit("random-lt", 1)).method.tau == 5e-4 and each.spec(Unit("active-lt", 1)).method.tau == 1e-4
    assert each.unit_hash(Unit("baseline", 0)) == plan.unit_hash(Unit("baseline", 0))  # τ does not touch BASELINE
    assert each.sweep_hash != plan.sweep_hash


def test_too_few_examples_for_the_holdout_or_a_bagging_member_is_refused_at_the_edge(generated_glue):
    """16 training examples: a holdout or a bagging subset that leaves 2 is planned, one that leaves 1 is not."""
    import pytest

    from mte.errors import MteError

    def build(**changes):
        data = dataclasses.replace(BASE.data, holdout=changes.pop("holdout", 0.0))
        spec = dataclasses.replace(BASE, data=data, method=MethodHparams(**changes))
        return SweepPlan.build(spec, ("baseline", "bagging"), 1, generated_glue)

    assert build(holdout=0.125).sizes == {"train": 14, "dev": 2}
    with pytest.raises(MteError, match="leaves 15 to train on and 1 to evaluate on"):
        build(holdout=0.05)
    with pytest.raises(MteError, match="leaves 1 to train on and 15 to evaluate on"):
        build(holdout=0.95)
    build(bagging_fraction=0.125)  # 2 of 16
    with pytest.raises(MteError, match="gives each BAGGING member 1"):
        build(bagging_fraction=0.07)
