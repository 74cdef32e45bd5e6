"""Pruning is a pure mask → mask function with exact counts; the L1 coefficients follow the paper."""

import numpy as np
import pytest
import torch

from mte.errors import MteError
from mte.masks import Mask, iou
from mte.pruning import active_coefficients, magnitude_prune, random_coefficients, round_targets


def weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(37, 11, generator=g), "b.weight": torch.randn(5, 64, generator=g) * 0.1,
            "c.weight": torch.randn(101, generator=g) * 3}


def test_exact_counts_per_round_and_nested_masks():
    w = weights()
    mask = Mask.dense(w)
    total = mask.total
    targets = round_targets(total, 0.3, 3)
    assert targets == [round(total * 0.1), round(total * 0.2), round(total * 0.3)]
    previous = mask
    for target in targets:
        trained = {k: v + 0.01 * torch.randn_like(v) for k, v in w.items()}
        new = magnitude_prune(trained, previous, target - (previous.total - previous.kept))
        assert new.total - new.kept == target
        assert not np.any(new.flat() & ~previous.flat()), "a pruned weight came back"
        previous = new
    assert previous.sparsity == pytest.approx(0.3, abs=1 / total)


def test_global_ranking_removes_smallest_survivors():
    w = weights(1)
    mask = Mask.dense(w)
    new = magnitude_prune(w, mask, 100)
    mags = torch.cat([w[k].abs().ravel() for k in sorted(w)]).numpy()
    kept = new.flat()
    assert mags[~kept].max() <= mags[kept].min()
    # the small-scale tensor loses most: ranking is global, not per layer
    assert (~new["b.weight"]).sum() > (~new["c.weight"]).sum()


def test_prune_does_not_mutate_inputs_and_already_pruned_are_not_counted():
    w = weights(2)
    mask = magnitude_prune(w, Mask.dense(w), 50)
    before = mask.flat().copy()
    w_before = {k: v.clone() for k, v in w.items()}
    # pretend training moved pruned weights to large values: they must stay pruned and not count
    moved = {k: torch.where(mask[k], v, torch.full_like(v, 100.0)) for k, v in w.items()}
    new = magnitude_prune(moved, mask, 30)
    assert np.array_equal(mask.flat(), before)
    assert all(torch.equal(w[k], w_before[k]) for k in w)
    assert new.total - new.kept == 80


def test_prune_refuses_impossible_amounts_and_foreign_masks():
    w = weights()
    with pytest.raises(MteError):
        magnitude_prune(w, Mask.dense(w), Mask.dense(w).total + 1)
    with pytest.raises(MteError, match="does not fit"):
        magnitude_prune(w, Mask.dense({"other.weight": torch.zeros(3, 3)}), 1)


def test_random_coefficients_zero_fraction_and_seeding():
    shapes = {"a": torch.Size([300, 400]), "b": torch.Size([1000])}
    coef = random_coefficients(shapes, 0.3, seed=5)
    flat = torch.cat([coef[k].ravel() for k in sorted(coef)])
    assert set(flat.unique().tolist()) == {0.0, 1.0}
    assert (flat == 0).float().mean().item() == pytest.approx(0.3, abs=0.005)
    again = random_coefficients(shapes, 0.3, seed=5)
    other = random_coefficients(shapes, 0.3, seed=6)
    assert all(torch.equal(coef[k], again[k]) for k in coef)
    assert not torch.equal(coef["a"], other["a"])


def test_active_coefficient_is_mean_of_given_masks():
    m1 = Mask({"x": torch.tensor([1, 1, 0, 0], dtype=torch.bool)})
    m2 = Mask({"x": torch.tensor([1, 0, 1, 0], dtype=torch.bool)})
    m3 = Mask({"x": torch.tensor([1, 0, 0, 0], dtype=torch.bool)})
    coef = active_coefficients([m1, m2, m3])
    assert torch.allclose(coef["x"], torch.tensor([1.0, 1 / 3, 1 / 3, 0.0]))
    assert active_coefficients([]) is None


def test_mask_file_roundtrip_is_bit_packed(tmp_path):
    w = weights()
    mask = magnitude_prune(w, Mask.dense(w, "m"), 123)
    path = tmp_path / "mask.safetensors"
    mask.save(path)
    loaded = Mask.load(path)
    assert loaded.model == "m" and loaded.digest() == mask.digest()
    assert np.array_equal(loaded.flat(), mask.flat())
    assert path.stat().st_size < mask.total / 8 + 1024  # about one bit per weight plus the header
    assert iou(mask, loaded) == 1.0
    assert iou(Mask({"x": torch.tensor([1, 1, 0, 0])}), Mask({"x": torch.tensor([0, 1, 1, 0])})) == 1 / 3
