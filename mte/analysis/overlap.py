"""How much the tickets of different seeds share: IoU of kept weights between every pair of masks (Figure 4).

Masks are compared bit-packed, 64 weights per word, in cache-sized blocks: a MiniLM mask has 21M weights,
and 20 seeds make 190 pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mte.errors import MteError

_BLOCK_WORDS = 1 << 12  # 64-bit words per block (32 KiB per mask): measured fastest of 2**10..2**16


def _packed_words(masks: Sequence[np.ndarray]) -> np.ndarray:
    """(s, words) uint64 of flat bool masks (or their np.packbits bytes); padding bits are 0, so counts hold."""
    packed = [np.packbits(m.ravel()) if m.dtype == bool else np.asarray(m, dtype=np.uint8).ravel() for m in masks]
    out = np.zeros((len(masks), -(-len(packed[0]) // 8) * 8), dtype=np.uint8)
    for row, p in zip(out, packed, strict=True):
        row[:len(p)] = p
    return out.view(np.uint64)


def iou_matrix(masks: Sequence[np.ndarray]) -> np.ndarray:
    """(s, s) intersection over union of kept weights; 1 where both masks keep nothing (as `mte.masks.iou`)."""
    if not masks:
        return np.zeros((0, 0))
    if len({(m.dtype == bool, m.size) for m in masks}) > 1:
        raise MteError("masks of different sizes (or mixed packed and unpacked) cannot be compared; "
                       "were they made for different models?")
    bits = _packed_words(masks)
    s = len(bits)
    inter = np.zeros((s, s), dtype=np.int64)
    both = np.empty((s, _BLOCK_WORDS), dtype=np.uint64)
    counts = np.empty((s, _BLOCK_WORDS), dtype=np.uint8)
    for start in range(0, bits.shape[1], _BLOCK_WORDS):
        block = bits[:, start:start + _BLOCK_WORDS]
        width = block.shape[1]
        for i in range(s):  # row i against rows i..s-1 at once
            np.bitwise_and(block[i], block[i:], out=both[:s - i, :width])
            np.bitwise_count(both[:s - i, :width], out=counts[:s - i, :width])
            inter[i, i:] += counts[:s - i, :width].sum(-1, dtype=np.uint32)  # ≤ 64 · 4096: no overflow
    inter = np.triu(inter) + np.triu(inter, 1).T
    kept = np.diag(inter)
    union = kept[:, None] + kept[None, :] - inter
    return np.divide(inter, union, out=np.ones((s, s)), where=union > 0)


def mean_off_diagonal(matrix: np.ndarray) -> float:
    """Mean IoU over distinct pairs; nan with fewer than two masks."""
    i, j = np.triu_indices(len(matrix), k=1)
    return float(matrix[i, j].mean()) if len(i) else float("nan")
