"""IMP end to end on the real MiniLM and a few dozen MRPC pairs: rounds, sharing, resuming, ACTIVE-LT."""

import dataclasses

import numpy as np
import pytest
import torch

from mte.errors import MteError
from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from mte.lottery import active_chain, run_seed
from mte.masks import Mask, iou
from mte.store import Store

SPEC = RunSpec(DataHparams(train_limit=32, eval_limit=24, max_length=64), ModelHparams(),
               TrainHparams(epochs=1, batch_size=16), MethodHparams(), seed=0)


def spec(method, seed=0, **kw):
    return dataclasses.replace(SPEC, method=MethodHparams(method, **kw), seed=seed)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def base_lt(store, glue_dir):
    return run_seed(spec("base-lt"), store, glue_dir)


@pytest.fixture(scope="module")
def random_lt(store, glue_dir):
    return run_seed(spec("random-lt", tau=1e-2), store, glue_dir)


def test_base_lt_prunes_exact_fractions_in_three_rounds(base_lt):
    total = base_lt.mask.total
    assert [r.sparsity for r in base_lt.rounds] == pytest.approx([0, 0.1, 0.2, 0.3], abs=1 / total)
    assert total - base_lt.mask.kept == round(0.3 * total)
    assert not any(r.regularised for r in base_lt.rounds)
    assert base_lt.dev_logits.shape == (24, 2) and base_lt.test_logits is not None
    assert set(base_lt.metrics) >= {"accuracy", "f1"}


def test_random_lt_regularises_pruning_rounds_only_and_finds_another_ticket(base_lt, random_lt):
    assert [r.regularised for r in random_lt.rounds] == [True, True, True, False]
    assert random_lt.mask.sparsity == pytest.approx(0.3, abs=1e-6)
    assert iou(base_lt.mask, random_lt.mask) < 1.0


def test_baseline_reuses_base_lt_round_zero(store, glue_dir, base_lt):
    baseline = run_seed(spec("baseline"), store, glue_dir)
    assert baseline.rounds[0].reused and baseline.rounds[0].key == base_lt.rounds[0].key
    assert baseline.mask.sparsity == 0.0


def test_each_fine_tune_records_where_it_ran_and_a_record_from_before_that_still_loads(store, base_lt, tmp_path):
    import json
    import shutil

    from mte.results import FINE_TUNE_JSON, load_fine_tune

    ran_on = f"cpu, {torch.get_num_threads()} thread(s), torch {torch.__version__}"
    assert [r.ran_on for r in base_lt.rounds] == [ran_on] * 4
    folder = store.path("finetunes", base_lt.rounds[0].key)
    assert json.loads((folder / FINE_TUNE_JSON).read_text())["ran_on"] == ran_on
    old = shutil.copytree(folder, tmp_path / "old")
    record = json.loads((old / FINE_TUNE_JSON).read_text())
    del record["ran_on"]
    (old / FINE_TUNE_JSON).write_text(json.dumps(record))
    loaded, logits = load_fine_tune(old)
    assert loaded.ran_on == "" and loaded.wall_s == base_lt.rounds[0].wall_s
    assert np.array_equal(logits["dev"], load_fine_tune(folder)[1]["dev"])


def test_rerun_loads_instead_of_training(store, glue_dir, base_lt):
    again = run_seed(spec("base-lt"), store, glue_dir)
    assert again.key == base_lt.key
    assert np.array_equal(again.dev_logits, base_lt.dev_logits)
    assert again.mask.digest() == base_lt.mask.digest()
    assert again.elapsed_s < 5


def test_active_lt_first_seed_is_base_lt_and_later_seeds_use_priors(store, glue_dir, base_lt):
    first, second = active_chain(spec("active-lt", tau=1e-2), store, [0, 1], glue_dir)
    assert first.mask.digest() == base_lt.mask.digest()  # no earlier masks: plain IMP, shared work
    assert all(r.reused for r in first.rounds)
    assert second.prior_masks == [first.mask.digest()]
    assert [r.regularised for r in second.rounds] == [True, True, True, False]


def test_active_lt_refuses_mask_of_another_model(store, glue_dir):
    foreign = Mask({"encoder.layer.0.weight": torch.ones(4, 4, dtype=torch.bool)}, model="other")
    with pytest.raises(MteError, match="prior mask does not fit"):
        run_seed(spec("active-lt", seed=1), store, glue_dir, prior_masks=[foreign])


def test_bagging_trains_on_a_subset(store, glue_dir):
    bag = run_seed(spec("bagging"), store, glue_dir)
    assert bag.rounds[0].steps == 2  # round(0.9 · 32) = 29 examples at batch 16
    assert not bag.rounds[0].reused


def test_a_stored_fine_tune_asked_for_another_prune_target_keeps_its_logits_and_gains_the_mask(store, glue_dir,
                                                                                              base_lt):
    """One-shot IMP to 30% reuses BASE-LT's round-0 fine-tune (stored with its 10% mask): the fine-tune is trained
    again for its weights, its logits reproduce bit for bit, so the 30% mask joins the same folder."""
    folder = store.path("finetunes", base_lt.rounds[0].key)
    before = np.load(folder / "dev_logits.npy")
    one_shot = run_seed(spec("base-lt", rounds=1), store, glue_dir)
    assert one_shot.rounds[0].key == base_lt.rounds[0].key
    pruned = sorted(p.name for p in folder.glob("pruned-*.safetensors"))
    total = base_lt.mask.total
    assert pruned == sorted([f"pruned-{round(0.1 * total)}.safetensors", f"pruned-{round(0.3 * total)}.safetensors"])
    np.testing.assert_array_equal(np.load(folder / "dev_logits.npy"), before)
    assert not (store.root / ".quarantine").exists()


def test_test_logits_only_where_a_result_reads_them_and_added_when_a_later_plan_does(store, glue_dir, base_lt,
                                                                                      random_lt):
    """Rounds that only lead to a mask skip the test split; the ticket and the dense unregularised round keep it.
    A later plan whose last fine-tune is such a round retrains it, and the test logits join the same folder."""
    has_test = [store.path("finetunes", r.key).joinpath("test_logits.npy").exists() for r in base_lt.rounds]
    assert has_test == [True, False, False, True]  # round 1 is BASELINE's fine-tune; the ticket is read
    has_test = [store.path("finetunes", r.key).joinpath("test_logits.npy").exists() for r in random_lt.rounds]
    assert has_test == [False, False, False, True]
    folder = store.path("finetunes", base_lt.rounds[1].key)  # trained under the 10% mask, then pruned to 20%
    dev = np.load(folder / "dev_logits.npy")
    ticket_at_10 = run_seed(spec("base-lt", rounds=1, sparsity=0.1), store, glue_dir)
    assert ticket_at_10.rounds[-1].key == base_lt.rounds[1].key and ticket_at_10.test_logits is not None
    np.testing.assert_array_equal(np.load(folder / "test_logits.npy"), ticket_at_10.test_logits)
    np.testing.assert_array_equal(np.load(folder / "dev_logits.npy"), dev)
    assert not (store.root / ".quarantine").exists()


def test_a_seed_run_without_the_test_split_gains_it_when_a_later_call_wants_it(tmp_path, glue_dir):
    st = Store(tmp_path / "store")
    quick = run_seed(spec("bagging"), st, glue_dir, test=False)  # what `mte run` does by default
    assert quick.test_logits is None and not st.path("runs", quick.key).joinpath("test_logits.npy").exists()
    full = run_seed(spec("bagging"), st, glue_dir)
    assert full.key == quick.key and full.test_logits is not None and full.test_logits.shape == (24, 2)
    np.testing.assert_array_equal(full.dev_logits, quick.dev_logits)
    again = run_seed(spec("bagging"), st, glue_dir)
    assert again.loaded and np.array_equal(again.test_logits, full.test_logits)
    assert not (st.root / ".quarantine").exists()


def test_a_stored_fine_tune_that_does_not_reproduce_is_replaced_whole_and_kept_aside(tmp_path, glue_dir):
    """Logits from one training are never paired with a mask from another: if retraining (for a missing mask)
    gives other logits, the whole folder is replaced and the old one quarantined."""
    st = Store(tmp_path / "store")
    baseline = run_seed(spec("baseline"), st, glue_dir)
    folder = st.path("finetunes", baseline.rounds[0].key)
    np.save(folder / "dev_logits.npy", np.zeros_like(np.load(folder / "dev_logits.npy")))  # another training's
    one_shot = run_seed(spec("base-lt", rounds=1), st, glue_dir)
    (aside,) = (st.root / ".quarantine" / "finetunes").iterdir()
    assert not np.load(aside / baseline.rounds[0].key / "dev_logits.npy").any()
    np.testing.assert_array_equal(np.load(folder / "dev_logits.npy"), baseline.dev_logits)
    assert (folder / f"pruned-{round(0.3 * baseline.mask.total)}.safetensors").exists()
    assert one_shot.rounds[0].key == baseline.rounds[0].key


def test_no_rewind_head_starts_each_round_from_the_head_trained_in_the_previous_one(store, glue_dir, base_lt):
    from mte.results import HEAD_FILE, load_head
    from mte.training import fine_tune
    from mte.workspace import open_workspace

    kept = run_seed(spec("base-lt", rewind_head=False), store, glue_dir)
    assert kept.rounds[0].key == base_lt.rounds[0].key  # round 1 starts from the initial head either way
    assert all(a.key != b.key for a, b in zip(kept.rounds[1:], base_lt.rounds[1:], strict=True))
    # Retrain the ticket by hand: initial encoder, the last round's trained head, the final mask.
    s = spec("base-lt", rewind_head=False).resolved()
    ws = open_workspace(s, glue_dir)
    head = load_head(store.path("finetunes", kept.rounds[-2].key) / HEAD_FILE)
    ws.initial.rewind(ws.net, head)
    d = ws.data
    out = fine_tune(ws.net, d.task, d.train, d.dev, d.test, s.train, s.seed, d.pad_id, mask=kept.mask)
    np.testing.assert_array_equal(out.dev_logits, kept.dev_logits)


def test_active_lt_chains_per_group_start_again_at_each_group():
    method = MethodHparams("active-lt", active_chain="group")
    assert list(method.chain_seeds(12)) == [10, 11, 12] and list(method.chain_seeds(3)) == [0, 1, 2, 3]
    assert list(MethodHparams("active-lt").chain_seeds(12)) == list(range(13))
    assert spec("active-lt", active_chain="group").resolved().key() != spec("active-lt").resolved().key()


def test_a_consumer_that_stops_after_a_round_leaves_every_store_lock_free(tmp_path, glue_dir):
    """τ tuning stops a sample after any round, and Ray may run the next sample in the same process: a suspended
    `seed_rounds` must hold no lock, or the next one asking for that seed would wait on it forever."""
    import fcntl

    from mte.lottery import seed_rounds

    store, s = Store(tmp_path), spec("random-lt", tau=1e-2, rounds=2)
    events = seed_rounds(s, store, glue_dir)
    first = next(events)  # the consumer stops here and keeps the generator (not closed)
    assert (first.index, first.count, first.result) == (0, 3, None)
    locks = sorted((tmp_path / ".locks").iterdir())
    assert {p.name.split("-")[0] for p in locks} >= {"runs", "finetunes", "data"}
    for path in locks:
        with open(path, "w") as f:  # another open file: flock conflicts with a lock the generator holds
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if it is held
            fcntl.flock(f, fcntl.LOCK_UN)
    result = run_seed(s, store, glue_dir)  # the same seed in the same process, the first still suspended
    assert [r.reused for r in result.rounds] == [True, False, False]
    assert result.rounds[0].key == first.record.key
    events.close()
