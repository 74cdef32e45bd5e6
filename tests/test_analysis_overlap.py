"""Mask overlap: IoU on hand masks, equal to `mte.masks.iou`, for bool and bit-packed masks."""

import numpy as np
import pytest
import torch

from mte.analysis.overlap import iou_matrix, mean_off_diagonal
from mte.errors import MteError
from mte.masks import Mask, iou


def test_hand_masks():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    c = np.array([0, 0, 0, 0], bool)
    m = iou_matrix([a, b, c, c])
    np.testing.assert_allclose(m, [[1, 1 / 3, 0, 0], [1 / 3, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    assert mean_off_diagonal(m) == pytest.approx((1 / 3 + 0 + 0 + 0 + 0 + 1) / 6)
    assert np.isnan(mean_off_diagonal(iou_matrix([a])))


def test_equals_mte_masks_iou_across_blocks_and_packing():
    rng = np.random.default_rng(0)
    shapes = {"a.weight": (600, 500), "b.weight": (1001,)}  # 301,001 weights: 2 blocks of 4096 words, ragged
    masks = [Mask({k: torch.from_numpy(rng.random(s) < p) for k, s in shapes.items()})
             for p in (0.7, 0.7, 0.3, 0.95)]
    expected = np.array([[iou(x, y) for y in masks] for x in masks])
    flat = [m.flat() for m in masks]
    np.testing.assert_allclose(iou_matrix(flat), expected, rtol=1e-15)
    np.testing.assert_allclose(iou_matrix([np.packbits(f) for f in flat]), expected, rtol=1e-15)


def test_masks_of_different_models_are_refused():
    with pytest.raises(MteError, match="different sizes"):
        iou_matrix([np.ones(64, bool), np.ones(63, bool)])
