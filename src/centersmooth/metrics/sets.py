"""Jaccard distance between Python sets: ``1 - |A & B| / |A | B|``, two empty sets at 0.

A metric on finite sets (values in [0, 1]). Used by ``jaccard`` and ``mask_jaccard`` when the
outputs are lists of sets or frozensets. The pairwise form counts intersections with a matrix
product of membership indicators over the items the sets hold, so it costs no Python loop per
pair.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import torch
from scipy.sparse import csr_matrix

from .base import PAIRWISE_BUDGET


def set_jaccard(
    a: Sequence[AbstractSet[Hashable]], b: Sequence[AbstractSet[Hashable]]
) -> torch.Tensor:
    """``d(a[i], b[i])`` for two lists of sets of equal length (float64)."""
    out = []
    for x, y in zip(a, b, strict=True):
        union = len(x | y)
        out.append(0.0 if union == 0 else 1.0 - len(x & y) / union)
    return torch.tensor(out, dtype=torch.float64)


def set_jaccard_pairwise(
    a: Sequence[AbstractSet[Hashable]], b: Sequence[AbstractSet[Hashable]]
) -> torch.Tensor:
    """``D[i, j] = d(a[i], b[j])`` (float64) from intersection counts ``A @ B.T``.

    ``A`` and ``B`` are 0/1 membership matrices over the items present: dense while they fit in
    ``PAIRWISE_BUDGET`` elements, SciPy sparse matrices beyond. Counts are exact in float32 up
    to 2^24 items per set.
    """
    index: dict[Hashable, int] = {}
    for s in (*a, *b):
        for item in s:
            index.setdefault(item, len(index))
    dense = (len(a) + len(b)) * max(len(index), 1) <= PAIRWISE_BUDGET
    ma, mb = _membership(a, index, dense), _membership(b, index, dense)
    if dense:
        inter = torch.from_numpy(ma) @ torch.from_numpy(mb).T
    else:
        inter = torch.from_numpy((ma @ mb.T).toarray())
    size_a = torch.tensor([len(s) for s in a], dtype=torch.float64)
    size_b = torch.tensor([len(s) for s in b], dtype=torch.float64)
    inter = inter.to(torch.float64)
    # |A ^ B| / |A | B| = 1 - |A & B| / |A | B|; two empty sets: 0 / 1
    differ = (size_a[:, None] + size_b[None, :]).sub_(inter, alpha=2.0)
    return differ.div_(inter.add_(differ).clamp_(min=1.0))


def majority_set(samples: Sequence[AbstractSet[Hashable]]) -> list[frozenset[Hashable]]:
    """The items held by more than half of the samples, as a one-element list (a central point
    for the Jaccard distance)."""
    counts: Counter[Hashable] = Counter()
    for s in samples:
        counts.update(s)
    return [frozenset(item for item, c in counts.items() if 2 * c > len(samples))]


def _membership(
    sets: Sequence[AbstractSet[Hashable]], index: dict[Hashable, int], dense: bool
) -> Any:
    """The 0/1 matrix ``M[i, index[item]] = 1`` for each item of ``sets[i]`` (float32)."""
    rows = np.fromiter((i for i, s in enumerate(sets) for _ in s), dtype=np.int64)
    cols = np.fromiter((index[item] for s in sets for item in s), dtype=np.int64)
    shape = (len(sets), max(len(index), 1))
    if dense:
        out = np.zeros(shape, dtype=np.float32)
        out[rows, cols] = 1.0
        return out
    return csr_matrix((np.ones(rows.shape[0], dtype=np.float32), (rows, cols)), shape=shape)
