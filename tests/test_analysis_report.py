"""The report end to end on small synthetic sweeps: files, partial sweeps, regression, SeedResult input."""

import base64

import numpy as np
import pandas as pd
import pytest
import torch

from mte.analysis import AnalysisOptions, Member, ResultSet, build_report
from mte.errors import MteError
from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from mte.masks import Mask
from mte.results import SeedResult
from mte.tasks import get_task

MRPC, STSB = get_task("mrpc"), get_task("sts-b")


def synthetic(task, methods, seeds, n=50, mask_size=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.normal(size=n) if task.is_regression else rng.integers(0, 2, n)
    members = []
    for method in methods:
        for s in seeds:
            if task.is_regression:
                logits = (labels + rng.normal(size=n))[:, None]
            else:
                z = np.where(labels == 1, 1.0, -1.0) + rng.normal(size=n)
                logits = np.stack([-z, z], 1)
            mask = rng.random(mask_size) < 0.7 if method.endswith("-lt") else None
            members.append(Member(method, s, logits.astype(np.float32), mask))
    return ResultSet.from_members(task, labels, members)


def test_full_report_writes_every_file(tmp_path):
    rs = synthetic(MRPC, ["baseline", "bagging", "base-lt", "active-lt", "random-lt"], range(6))
    r = build_report(rs, tmp_path / "out", AnalysisOptions(sizes=(2, 3), permutations=100), expected_seeds=range(6))
    assert all(p.exists() and p.stat().st_size > 0 for p in r.paths)
    assert set(r.csvs) >= {"table1_ensembles", "tests", "table2_diversity", "mask_overlap", "curves", "missing",
                           "mask_iou_base-lt", "mask_iou_active-lt", "mask_iou_random-lt"}
    assert set(r.figures) == {"gain_vs_members", "mask_iou", "reliability"}
    t1 = pd.read_csv(r.csvs["table1_ensembles"])
    assert {"accuracy_p_vs_baseline", "f1_p_vs_base_lt", "accuracy_gain_ci_low", "f1_mark", "f1_p_vs_bagging",
            "accuracy_ttest_p_vs_baseline", "accuracy_p_diff_vs_baseline", "accuracy_ttest_p_diff_vs_base_lt",
            "winning_share", "accuracy_p_holm_vs_baseline", "sparsity"} <= set(t1.columns)
    assert list(t1.method) == ["baseline", "bagging", "base-lt", "active-lt", "random-lt"]
    assert pd.read_csv(r.csvs["missing"]).empty
    html = r.html.read_text()
    assert html.count("data:image/png;base64,") == 3
    assert base64.b64decode(html.split("base64,")[1].split("'")[0])[:4] == b"\x89PNG"
    md = r.markdown.read_text()
    assert "Table 1" in md and "Table 2" in md and "fig3_gain_vs_members.png" in md and "1.8e308" not in md
    assert set(pd.read_csv(r.csvs["curves"]).members) == {1, 2, 3, 4, 5}
    assert "NOT the paper's 5" in md and "Table 1b" in md and "anti-conservative" in md
    assert r.tables["table1_ensembles"] is r.analysis.table1


def test_partial_sweep_lists_missing_and_explains_short_methods(tmp_path):
    full = synthetic(MRPC, ["baseline"], range(8))
    short = synthetic(MRPC, ["random-lt"], [0, 2, 5])
    rs = ResultSet(MRPC, full.labels, full.members | short.members)
    r = build_report(rs, tmp_path, AnalysisOptions(sizes=(2, 3), permutations=50), expected_seeds=range(8),
                     expected_methods=["baseline", "base-lt", "random-lt"])
    missing = set(map(tuple, pd.read_csv(r.csvs["missing"]).to_numpy().tolist()))
    assert missing == {("base-lt", s) for s in range(8)} | {("random-lt", s) for s in (1, 3, 4, 6, 7)}
    md = r.markdown.read_text()
    assert "RANDOM-LT: seed(s) 1, 3–4, 6–7" in md and "BASE-LT: seed(s) 0–7" in md
    assert "BASE-LT has no results" in md and "This comparison cannot support a conclusion" in md


def test_regression_report_has_no_diversity_table(tmp_path):
    rs = synthetic(STSB, ["baseline", "base-lt"], range(4))
    r = build_report(rs, tmp_path, AnalysisOptions(sizes=(2,), permutations=50, headline="spearman"))
    assert "table2_diversity" not in r.csvs and "Table 2" not in r.markdown.read_text()
    assert any("regression" in n for n in r.analysis.notes)
    t1 = r.analysis.table1.set_index("method")
    assert np.isfinite(t1.loc["base-lt", "spearman_gain_ci_low"])


def test_bad_options_are_user_errors(tmp_path):
    rs = synthetic(MRPC, ["baseline"], range(4))
    with pytest.raises(MteError, match="no metric 'pearson'"):
        build_report(rs, tmp_path, AnalysisOptions(headline="pearson"))
    with pytest.raises(MteError, match="sizes"):
        build_report(rs, tmp_path, AnalysisOptions(sizes=(0, 2)))
    with pytest.raises(MteError, match="unknown combine 'votes'"):
        build_report(rs, tmp_path, AnalysisOptions(combine="votes"))


def seed_result(method, seed, logits, labels, task="mrpc"):
    spec = RunSpec(DataHparams(task=task), ModelHparams(), TrainHparams(lr=1e-4), MethodHparams(method=method), seed)
    g = torch.Generator().manual_seed(seed)
    mask = Mask({"w": torch.rand(4, 8, generator=g) < 0.7, "b": torch.rand(8, generator=g) < 0.7})
    return SeedResult(f"{method}{seed}", spec, mask, logits, labels, None, [], "fp")


def test_from_seed_results():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 20)
    results = [seed_result(m, s, rng.normal(size=(20, 2)).astype(np.float32), labels)
               for m in ("baseline", "base-lt") for s in (1, 0)]
    rs = ResultSet.from_seed_results(results)
    assert rs.task is MRPC and rs.methods == ["baseline", "base-lt"] and rs.seeds("base-lt") == [0, 1]
    assert all(m.mask is None for m in rs.members["baseline"])
    lt = rs.members["base-lt"][0]
    np.testing.assert_array_equal(lt.mask, results[3].mask.flat())
    other = labels.copy()
    other[0] ^= 1
    with pytest.raises(MteError, match="other dev examples"):
        ResultSet.from_seed_results([*results, seed_result("bagging", 0, results[0].dev_logits, other)])
    with pytest.raises(MteError, match="several tasks"):
        ResultSet.from_seed_results([*results, seed_result("bagging", 0, results[0].dev_logits, labels, "rte")])


def test_several_tasks_make_one_report_side_by_side(tmp_path):
    from mte.analysis import analyse, write_report

    mrpc = analyse(synthetic(MRPC, ["baseline", "base-lt"], range(6)), AnalysisOptions(permutations=20),
                   context={"model": "minilm"})
    stsb = analyse(synthetic(STSB, ["baseline", "base-lt"], range(6), seed=1), AnalysisOptions(permutations=20))
    r = write_report([mrpc, stsb], tmp_path)
    md = r.markdown.read_text()
    assert md.startswith("# Multi-ticket ensembles on MRPC and STS-B")
    assert "Table 1: all tasks" in md and "MRPC accuracy ensemble" in md and "STS-B pearson ensemble" in md
    assert {"mrpc_table1_ensembles", "sts-b_table1_ensembles", "mrpc_tests"} <= set(r.csvs)
    assert {"gain_vs_members", "mrpc_gain_vs_members", "sts-b_gain_vs_members"} <= set(r.figures)
    assert "- model: minilm" in md and r.html.read_text().count("data:image/png;base64,") == len(r.figures)
    # every metric of every task side by side (STS-B's Spearman too), and what the files are really called
    assert "STS-B spearman ensemble" in md and "MRPC f1 diff" in md and "§: a diff larger" in md
    for name in ("mrpc_table2_diversity.csv", "mrpc_mask_iou_<method>.csv", "sts-b_mask_iou_<method>.csv"):
        assert name in md
    assert (tmp_path / "mrpc_table2_diversity.csv").exists() and (tmp_path / "sts-b_mask_iou_base-lt.csv").exists()
    assert " table2_diversity.csv" not in md and "in mask_iou_<method>.csv" not in md


def test_combined_table_carries_each_tasks_warnings_and_the_text_matches_the_sizes(tmp_path):
    from mte.analysis import analyse, write_report

    mrpc = analyse(synthetic(MRPC, ["baseline", "random-lt"], range(3)), AnalysisOptions(permutations=20))
    stsb = analyse(synthetic(STSB, ["baseline", "random-lt"], range(15), seed=1), AnalysisOptions(permutations=20))
    assert mrpc.warnings and not stsb.warnings
    md = write_report([mrpc, stsb], tmp_path).markdown.read_text()
    combined = md.split("## Figure 3")[0]
    assert all(f"> - MRPC: {w}" in combined for w in mrpc.warnings) and "> - STS-B" not in combined
    assert "Fig. 3 uses sizes 1–3 (no group has more than 3 seeds)" in md
    assert "sizes 1–5." in md  # STS-B: groups of 10 and 5
    assert "Sparsity (of prunable weights)" in md and "as a share of all the model's parameters" in md
    assert "—: not applicable" in md and "— where it is undefined" in md


def test_marks_render_as_the_papers_typography(tmp_path):
    from mte.analysis.display import marked
    from mte.analysis.document import page as _html

    assert marked(0.8512, "‡", True) == "<u>***85.12***</u>‡"
    assert marked(0.8512, "†", False) == "*85.12*†"
    page = _html([("table", pd.DataFrame({"x": [marked(0.8512, "‡", True), marked(0.8, "†", False)]}))], "t")
    assert "<u><b><i>85.12</i></b></u>‡" in page and "<i>80.00</i>†" in page
