"""Distances between masks, sets and label maps: Jaccard on masks / sets, and Hamming."""

from __future__ import annotations

from typing import Any

import torch

from .base import PAIRWISE_BUDGET, SETS, TENSORS, Metric, flat
from .sets import majority_set, set_jaccard, set_jaccard_pairwise

# Label maps with integer labels in a range of at most this many values are compared class by
# class with matrix products (exact: 0/1 products summed in float32, counts below 2**24), and
# their per-position mode is counted on the device; other labels are compared directly.
MAX_CLASSES = 64


class MaskJaccardDistance(Metric):
    """``1 - |A & B| / |A | B|`` for binary masks (any shape; nonzero = member) or Python sets.

    Two empty masks are at distance 0. The Jaccard distance is a metric on sets.
    Tensor outputs give masks; list outputs must hold sets or frozensets.
    """

    name = "mask_jaccard"
    upper = 1.0
    takes = (TENSORS, SETS)

    def distance(self, a: Any, b: Any) -> torch.Tensor:
        a, b = self.accept_pair(a, b)
        if isinstance(a, list):
            return set_jaccard(a, b)
        ma, mb = _masks(a), _masks(b)
        inter = (ma * mb).sum(dim=1)
        return _from_counts(inter, ma.sum(dim=1), mb.sum(dim=1))

    def pairwise(self, a: Any, b: Any) -> torch.Tensor:
        a, b = self.accept_pair(a, b)
        if isinstance(a, list):
            return set_jaccard_pairwise(a, b)
        ma, mb = _masks(a), _masks(b)
        inter = ma @ mb.T
        return _from_counts(inter, ma.sum(dim=1)[:, None], mb.sum(dim=1)[None, :])

    def central_candidates(self, samples: Any) -> Any:
        samples = self.accept(samples)
        if isinstance(samples, list):
            return majority_set(samples)
        majority = (_masks(samples).mean(dim=0) > 0.5).to(samples.dtype)
        return majority.reshape(1, *samples.shape[1:])


class HammingDistance(Metric):
    """Fraction of positions at which two label maps differ (a metric, values in [0, 1])."""

    name = "hamming"
    upper = 1.0
    takes = (TENSORS,)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (flat(self.accept(a)) != flat(self.accept(b))).to(torch.float32).mean(dim=1)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``D[i, j]``: with few integer labels, the agreements of every pair counted class by
        class as a product of 0/1 matrices (``sum_k [a = k] [b = k]^T``, exact in float32), so
        that no Python loop runs over rows; otherwise direct comparisons in blocks."""
        fa, fb = flat(self.accept(a)), flat(self.accept(b))
        n_a, n_b, size = fa.shape[0], fb.shape[0], fa.shape[1] if fa.dim() > 1 else 0
        if n_a == 0 or n_b == 0 or size == 0:
            return torch.zeros(n_a, n_b, device=fb.device)
        classes = _small_label_range(fa, fb)
        if classes is None or size >= 2**24:
            return _compared_in_blocks(fa, fb)
        agree = torch.zeros(n_a, n_b, device=fb.device)
        # a block of b's one-hot columns stays within the pairwise memory budget
        step = max(1, PAIRWISE_BUDGET // size)
        for k in classes:
            left = (fa == k).to(torch.float32)
            for start in range(0, n_b, step):
                right = (fb[start : start + step] == k).to(torch.float32)
                agree[:, start : start + step].addmm_(left, right.T)
        return (size - agree) / size

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        """The per-position mode (the smallest label among ties, as ``torch.mode`` gives); with
        few integer labels counted on the samples' device (``torch.mode`` on a CUDA device falls
        back to a loop on the host past 2,048 samples)."""
        samples = self.accept(samples)
        classes = _small_label_range(samples, samples)
        if classes is None:
            host = samples.cpu() if samples.device.type == "cuda" else samples
            return torch.mode(host, dim=0).values.unsqueeze(0).to(samples.device)
        counts = torch.stack([(samples == k).sum(dim=0) for k in classes])
        best = counts.argmax(dim=0)  # the first of the largest counts: the smallest label
        return (best + classes.start).to(samples.dtype).unsqueeze(0)


def _small_label_range(a: torch.Tensor, b: torch.Tensor) -> range | None:
    """The integer labels ``lo .. hi`` of ``a`` and ``b`` when every entry is an integer and there
    are at most ``MAX_CLASSES`` of them, else ``None``."""
    if a.is_complex() or b.is_complex():
        return None
    bounds = []
    for t in (a, b):
        if t.numel() == 0:
            continue
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        if t.is_floating_point() and not bool((t == t.round()).all()):
            return None
        low, high = torch.aminmax(t)
        bounds += [float(low), float(high)]
    if not bounds or max(bounds) - min(bounds) + 1 > MAX_CLASSES:
        return None
    return range(int(min(bounds)), int(max(bounds)) + 1)


def _compared_in_blocks(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """``D[i, j]`` by direct comparison, blocks of rows within the pairwise memory budget."""
    n_b, size = fb.shape
    out = torch.empty(fa.shape[0], n_b, device=fb.device)
    rows = max(1, PAIRWISE_BUDGET // max(n_b * size, 1))
    for start in range(0, fa.shape[0], rows):
        differ = fa[start : start + rows, None] != fb[None]
        out[start : start + rows] = differ.sum(dim=2).to(torch.float32) / size
    return out


def _masks(batch: torch.Tensor) -> torch.Tensor:
    return (flat(batch) != 0).to(torch.float32)


def _from_counts(inter: torch.Tensor, size_a: torch.Tensor, size_b: torch.Tensor) -> torch.Tensor:
    union = size_a + size_b - inter
    empty = union <= 0
    jac = 1.0 - inter / torch.where(empty, torch.ones_like(union), union)
    return torch.where(empty, torch.zeros_like(jac), jac).clamp(0.0, 1.0)
