"""Result keys: stable, explicit about the learning rate, and blind to irrelevant hyperparameters."""

import dataclasses

import pytest

from mte.errors import MteError
from mte.hparams import (
    MAX_ROUNDS,
    MAX_SEEDS,
    MODEL_DEFAULT_LR,
    DataHparams,
    MethodHparams,
    ModelHparams,
    RunSpec,
    TrainHparams,
    check_seed_count,
)


def spec(method="baseline", seed=0, **method_kw):
    method_hp = MethodHparams(method, **method_kw)
    return RunSpec(DataHparams(), ModelHparams(), TrainHparams(), method_hp, seed).resolved()


def test_key_is_stable_and_lr_resolved_per_model():
    a, b = spec(), spec()
    assert a.key() == b.key()
    assert a.train.lr == MODEL_DEFAULT_LR["minilm"]  # measured default for the bundled model
    bert = RunSpec(DataHparams(), ModelHparams("bert-base-uncased"), TrainHparams(), MethodHparams(), 0).resolved()
    assert bert.train.lr == 2e-5  # the paper's
    explicit = dataclasses.replace(a, train=TrainHparams(lr=1e-4)).resolved()
    assert explicit.key() == a.key()  # the default is hashed as its value


def test_key_changes_with_what_matters_only():
    assert spec(seed=1).key() != spec().key()
    assert spec("random-lt", tau=1e-3).key() != spec("random-lt").key()
    assert spec("baseline", tau=1e-3).key() == spec("baseline").key()  # τ is irrelevant to BASELINE
    assert spec("base-lt").key() != spec("baseline").key()


@pytest.mark.parametrize(
    "kw, message",
    [({"method": "lottery"}, "unknown method"), ({"method": "random-lt", "tau": -1.0}, "tau must be >= 0"),
     ({"method": "base-lt", "sparsity": 1.0}, r"sparsity must be in \[0, 1\)"),
     ({"method": "base-lt", "rounds": 10_000_000_000}, "rounds must be between 1 and 100"),
     ({"method": "base-lt", "rounds": 0}, "rounds must be between 1 and 100")],
)
def test_validation(kw, message):
    with pytest.raises(MteError, match=message):
        RunSpec(DataHparams(), ModelHparams(), TrainHparams(), MethodHparams(**kw), 0).validate()


def test_what_a_plan_asks_for_is_bounded_and_the_bounds_themselves_are_accepted():
    assert spec("base-lt", rounds=MAX_ROUNDS).method.rounds == MAX_ROUNDS
    assert spec("active-lt", seed=MAX_SEEDS - 1).seed == MAX_SEEDS - 1  # a chain of MAX_SEEDS seeds
    with pytest.raises(MteError, match="a chain holds at most 10000 seeds"):
        spec("active-lt", seed=MAX_SEEDS)
    assert spec("active-lt", seed=4 * 10**9, active_chain="group").seed == 4 * 10**9  # its chain: one group
    assert spec("baseline", seed=4 * 10**9).seed == 4 * 10**9  # one seed, however large its number
    check_seed_count(MAX_SEEDS)
    with pytest.raises(MteError, match="--seeds must be <= 10000"):
        check_seed_count(10**11)
    with pytest.raises(MteError, match="--seeds must be >= 1"):
        check_seed_count(0)
