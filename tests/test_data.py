"""GLUE TSV reading, tokenised batching, bagging subsets."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import SHARED_GLUE

from mte.batches import train_batches
from mte.data import read_tsv_split
from mte.errors import MteError
from mte.methods.bagging import bagging_subset
from mte.tasks import get_task

MRPC = get_task("mrpc")


@pytest.mark.skipif(not (SHARED_GLUE / "MRPC").exists(), reason="real GLUE data not beside the repo")
def test_real_mrpc_counts_bom_and_quotes():
    train = read_tsv_split(MRPC, SHARED_GLUE / "MRPC" / "train.tsv", "train")
    dev = read_tsv_split(MRPC, SHARED_GLUE / "MRPC" / "dev.tsv", "dev")
    test = read_tsv_split(MRPC, SHARED_GLUE / "MRPC" / "test.tsv", "test")
    assert (len(train), len(dev), len(test)) == (3668, 408, 1725)
    assert test.labels is None
    assert dev.labels.mean() == pytest.approx(0.684, abs=0.001)
    assert train.texts[0][0].startswith("Amrozi accused his brother")
    assert any('"' in s for s in train.texts[0])  # quotes kept verbatim (no quote processing)


def test_generated_folder_reads(generated_glue):
    train = read_tsv_split(MRPC, generated_glue / "MRPC" / "train.tsv", "train")
    assert len(train) == 96 and set(np.unique(train.labels)) <= {0, 1}


@pytest.mark.parametrize(
    "content, message",
    [
        ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tonly one sentence\n", r"train\.tsv:2: expected"),
        ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n", "no examples"),
        ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n7\t1\t2\ta\tb\n", r"train\.tsv:3: label '7'"),
        ("Label\tA\tB\n1\ta\tb\n", "no column '#1 String'"),
    ],
)
def test_malformed_tsv_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "train.tsv"
    path.write_text(content)
    with pytest.raises(MteError, match=message):
        read_tsv_split(MRPC, path, "train")


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85"])
def test_a_line_separator_inside_a_sentence_is_text_and_crlf_still_ends_lines(tmp_path, sep):
    head = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    rows = [f"{i % 2}\t{i}\t{i + 100}\tsentence {i}\tother {i}" for i in range(8)]
    rows[5] = f"1\t5\t105\tbefore{sep}after\tsecond{sep}half"
    path = tmp_path / "train.tsv"
    path.write_bytes(("\r\n".join([head, *rows]) + "\r\n").encode())
    train = read_tsv_split(MRPC, path, "train")
    assert len(train) == 8
    assert train.texts[0][5] == f"before{sep}after" and train.texts[1][5] == f"second{sep}half"
    assert train.texts[1][7] == "other 7" and list(train.labels) == [i % 2 for i in range(8)]


def test_stsb_scores_are_floats_and_range_checked(tmp_path):
    stsb = get_task("stsb")
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    path = tmp_path / "dev.tsv"
    path.write_text(head + "0\tg\tf\ty\t0\ts\ts\ta b\tc d\t3.8\n")
    split = read_tsv_split(stsb, path, "dev")
    assert split.labels.dtype == np.float32 and split.labels[0] == pytest.approx(3.8)
    path.write_text(head + "0\tg\tf\ty\t0\ts\ts\ta b\tc d\t7.5\n")
    with pytest.raises(MteError, match="outside"):
        read_tsv_split(stsb, path, "dev")


def test_unknown_task_is_a_clear_error():
    with pytest.raises(MteError, match="unknown task 'mrcp'"):
        get_task("mrcp")


def test_bagging_subset_is_90_percent_distinct_and_seeded():
    a = bagging_subset(3668, 0.9, seed=3)
    assert len(a) == round(0.9 * 3668) and len(np.unique(a)) == len(a)
    assert np.array_equal(a, bagging_subset(3668, 0.9, seed=3))
    assert not np.array_equal(a, bagging_subset(3668, 0.9, seed=4))


def test_length_grouped_batches_cover_every_example_once():
    lengths = torch.randint(5, 120, (1000,))
    batches = train_batches(lengths, 32, torch.Generator().manual_seed(0), group_by_length=True)
    seen = torch.cat(batches)
    assert sorted(seen.tolist()) == list(range(1000))
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    plain = train_batches(lengths, 32, torch.Generator().manual_seed(0), group_by_length=False)
    assert padded < 0.8 * sum(len(b) * int(lengths[b].max()) for b in plain)


def test_holdout_is_disjoint_reproducible_and_replaces_dev(generated_glue):
    from mte.data import holdout_split
    from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
    from mte.workspace import load_data

    keep, held = holdout_split(1000, 0.1)
    assert len(held) == 100 and len(keep) == 900 and not set(keep) & set(held)
    again_keep, again_held = holdout_split(1000, 0.1)
    assert np.array_equal(held, again_held) and np.array_equal(keep, again_keep)

    spec = RunSpec(DataHparams(holdout=0.25), ModelHparams(), TrainHparams(), MethodHparams(), 3).resolved()
    held_out = load_data(spec, generated_glue)
    train, dev, test = held_out.train, held_out.dev, held_out.test
    full = load_data(dataclasses.replace(spec, data=DataHparams()), generated_glue).train
    assert (len(train), len(dev), test) == (72, 24, None)
    _, held = holdout_split(96, 0.25)
    assert torch.equal(dev.input_ids, full.subset(held).input_ids)  # the held-out rows, not dev's


def test_holdout_rows_are_never_trained_on_and_do_not_depend_on_the_run_seed(generated_glue):
    """The workspace a seed trains in (any seed, any τ) trains on exactly the kept rows of the limited train
    split and scores exactly the held-out ones; no test split is scored while tuning."""
    from mte.data import holdout_split
    from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
    from mte.workspace import load_data, open_workspace

    data = DataHparams(holdout=0.25, train_limit=64)
    spec = RunSpec(data, ModelHparams(), TrainHparams(), MethodHparams(method="random-lt"), 0).resolved()
    full = load_data(dataclasses.replace(spec, data=DataHparams(train_limit=64)), generated_glue).train
    keep, held = holdout_split(64, 0.25)
    for seed in (0, 7):
        ws = open_workspace(dataclasses.replace(spec, seed=seed), generated_glue).data
        assert torch.equal(ws.train.input_ids, full.subset(keep).input_ids)
        assert torch.equal(ws.dev.input_ids, full.subset(held).input_ids) and ws.test is None
        trained = {tuple(row.tolist()) for row in ws.train.input_ids}
        assert not any(tuple(row.tolist()) in trained for row in ws.dev.input_ids)  # disjoint by content too


def test_tokenised_data_cache_gives_what_tokenising_gives_and_is_keyed_by_what_changes_it(generated_glue, tmp_path):
    """A store caches each tokenisation once (`data/<key>`): loading it gives the same tensors as tokenising,
    holdout included; max length, limits and the data files each name another entry; a damaged entry is set
    aside and tokenised again."""
    import shutil

    from mte.data import SPLITS, TokenizedSplits
    from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
    from mte.store import Store
    from mte.workspace import load_data

    def same(a, b) -> None:
        for split in SPLITS:
            x, y = getattr(a, split), getattr(b, split)
            assert (x is None) == (y is None)
            if x is not None:
                assert x.tensors().keys() == y.tensors().keys()
                for k, v in x.tensors().items():
                    assert v.dtype == y.tensors()[k].dtype and torch.equal(v, y.tensors()[k]), (split, k)
        assert a.pad_id == b.pad_id

    store = Store(tmp_path / "store")

    def entries() -> list[str]:
        return sorted(p.name for p in (store.root / "data").iterdir())

    for data in (DataHparams(train_limit=80), DataHparams(holdout=0.25), DataHparams(train_limit=80, holdout=0.25)):
        spec = RunSpec(data, ModelHparams(), TrainHparams(), MethodHparams(), 0).resolved()
        fresh = load_data(spec, generated_glue)
        same(load_data(spec, generated_glue, store), fresh)  # tokenised and cached
        same(load_data(spec, generated_glue, store), fresh)  # loaded from the cache
    assert len(entries()) == 2  # a holdout is cut from the cached splits: it shares their entry
    spec = RunSpec(DataHparams(train_limit=80, max_length=16), ModelHparams(), TrainHparams(), MethodHparams(),
                   0).resolved()
    short = load_data(spec, generated_glue, store)
    assert short.train.input_ids.shape[1] == 16 and len(entries()) == 3

    other = tmp_path / "other-glue"
    shutil.copytree(generated_glue, other)
    tsv = other / "MRPC" / "train.tsv"
    lines = tsv.read_text().splitlines()
    tsv.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # one training pair fewer
    changed = load_data(spec, other, store)
    assert len(entries()) == 4 and not torch.equal(changed.train.input_ids, short.train.input_ids)

    for key in entries():
        cached = store.root / "data" / key / TokenizedSplits.FILE
        raw = cached.read_bytes()
        cached.write_bytes(raw[:-8] + bytes(b ^ 0xFF for b in raw[-8:]))  # damaged on disk
        TokenizedSplits.load(cached.parent)  # still parses: only the manifest's checksum can tell
    for data in (DataHparams(train_limit=80), DataHparams(holdout=0.25), DataHparams(train_limit=80, max_length=16)):
        spec = RunSpec(data, ModelHparams(), TrainHparams(), MethodHparams(), 0).resolved()
        same(load_data(spec, generated_glue, store), load_data(spec, generated_glue))
    assert len(list((store.root / ".quarantine" / "data").iterdir())) == 3  # the damaged entries were set aside
