"""Result keys: stable, explicit about the learning rate, and blind to irrelevant hyperparameters."""

import dataclasses

import pytest

from mte.errors import MteError
from mte.hparams import MODEL_DEFAULT_LR, DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams


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
     ({"method": "base-lt", "sparsity": 1.0}, r"sparsity must be in \[0, 1\)")],
)
def test_validation(kw, message):
    with pytest.raises(MteError, match=message):
        RunSpec(DataHparams(), ModelHparams(), TrainHparams(), MethodHparams(**kw), 0).validate()
