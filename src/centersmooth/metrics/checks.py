"""Checked distances: a distance that is not built in is tested before a certificate rests on it.

A certificate is only as good as the distance's declared constant ``gamma`` (``gamma = 1`` for a
metric, 2 for a squared Euclidean-type distance): ``eps_out`` grows with it, and a declared value
below the true one states too small a radius. A squared l2 distance passed as a plain callable,
for example, is taken with ``gamma = 1`` and gives a certificate about three times too small
(its true constant is 2). So every distance that is not built in (a callable, a
``FunctionMetric``, a ``Metric`` subclass of your own) is tested on the outputs of the run before
any certificate is returned:

- the relaxed triangle inequality ``d(a, c) <= gamma (d(a, b) + d(b, c))`` with the declared
  ``gamma``, on every triple drawn from a random subset of the center samples together with the
  chosen center and the central candidates (points between the samples, which is where a squared
  Euclidean distance or ``1 - cos`` breaks ``gamma = 1``);
- symmetry, ``d(a, b) = d(b, a)``, and ``d(a, a) = 0``.

It costs one matrix of distances between 45 samples and the points, about 2,100 to 2,600
evaluations (a quarter of that for outputs that are Python objects such as strings), in a few
batched calls. A test fails only beyond rounding: with ``eps``
the machine epsilon of the distances' floating type (the coarser of the outputs' and the
distances' types; float64 for integer distances), ``r = sqrt(eps)`` (3.5e-4 for float32, 1.5e-8
for float64) and ``M`` the largest distance seen, a triple fails when
``d(a, c) > gamma (d(a, b) + d(b, c)) (1 + r) + r M``, a pair when
``|d(a, b) - d(b, a)| > r max(d(a, b), d(b, a)) + r M`` and an output when ``d(a, a) > r M``.
A true metric computed in float32 stays far inside these margins.

A failure raises :class:`DistanceCheckError` (a ``ValueError``) naming the distance, its
declared ``gamma`` and the smallest ``gamma`` the triples seen would need. Declare the constant
you can prove, ``FunctionMetric(fn, gamma=2.0)`` for squared Euclidean-type distances, or use
the built-in names ``"squared_l2"`` and ``"cosine"`` (``1 - cos``), which declare ``gamma = 2``.

Such a check can refute a declared constant, never prove one: it sees a few thousand triples of
the outputs at hand, and a distance that passes may still break its constant elsewhere. Passing
it is no substitute for a proof of ``gamma``. If you have one and the check still fails (for
example on rounding the margins above do not cover), turn it off with ``check_metric=False`` on
``CenterSmoothing`` (``--no-check-metric`` on the command line). Built-in distances are not
tested: their constants are proved in their docstrings and tested in the library's test suite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .base import PAIRWISE_BUDGET, FunctionMetric, Metric, Outputs

PAIR_BLOCK = 4096  # pairs per call for outputs that are Python objects
TRIPLE_BLOCK = 2**22  # ratios held at once in the triangle test
SWITCH = "check_metric=False on CenterSmoothing (--no-check-metric on the command line)"


class DistanceCheckError(ValueError):
    """A distance's declared properties (``gamma``, symmetry, ``d(a, a) = 0``) are refuted by
    the distances it returned on the outputs of a run."""


def needs_check(metric: Metric) -> bool:
    """Whether ``metric`` is not built in: a :class:`FunctionMetric` (a plain callable), or a
    :class:`Metric` whose class is defined outside ``centersmooth.metrics``. Built-in distances
    are trusted."""
    if isinstance(metric, FunctionMetric):
        return True
    module = type(metric).__module__
    package = __name__.rpartition(".")[0]
    return not (module == package or module.startswith(package + "."))


def check_distance(
    metric: Metric,
    samples: Outputs,
    points: Sequence[Any] = (),
    *,
    n_triples: int = 2000,
    seed: int = 0,
) -> None:
    """Test ``metric`` on outputs of a run; raise :class:`DistanceCheckError` if it breaks the
    relaxed triangle inequality with its declared ``gamma``, symmetry or ``d(a, a) = 0``.

    ``samples`` is the batch of center samples (a tensor batch, or a list of Python objects);
    ``points`` are further outputs, one per element (the chosen center, central candidates; a
    tensor batch of several is taken row by row, ``None`` is skipped). The test draws
    ``k = ceil(sqrt(n_triples))`` samples (half as many for Python objects) with a generator
    seeded by ``seed``, adds up to ``k`` points, evaluates the distance between every ordered
    pair of them in a few batched calls (about ``n_triples`` evaluations) and tests every triple
    of that matrix, at least ``n_triples`` of them. The module docstring gives the tolerances.

    Such a check can refute a declared constant, never prove one.
    """
    if n_triples < 1:
        raise ValueError(f"n_triples must be a positive integer, got {n_triples!r}")
    outputs, floating = _test_outputs(samples, points, n_triples, seed)
    if _length(outputs) == 0:
        return
    d, distance_types = _distance_matrix(metric, outputs)
    eps = max((torch.finfo(t).eps for t in (*floating, *distance_types)), default=0.0)
    r = math.sqrt(eps or torch.finfo(torch.float64).eps)
    name = f"the distance {metric.name!r}"
    _check_values(name, d)
    largest = float(d.max())
    slack = r * largest
    _check_self_distances(name, d, slack, largest)
    _check_symmetry(name, d, r, slack)
    _check_triangle(metric, name, d, r, slack)


# ----------------------------------------------------------------------------- the outputs
def _test_outputs(
    samples: Outputs, points: Sequence[Any], n_triples: int, seed: int
) -> tuple[Outputs, list[torch.dtype]]:
    """The outputs to test (points first, then the drawn samples) and their floating types."""
    if isinstance(samples, np.ndarray) and samples.dtype != object:
        samples = torch.from_numpy(np.ascontiguousarray(samples))
    generator = torch.Generator().manual_seed(int(seed))
    side = math.ceil(math.sqrt(n_triples))
    if isinstance(samples, torch.Tensor):
        k = min(samples.shape[0], max(2, side))
        idx = torch.randperm(samples.shape[0], generator=generator)[:k]
        drawn = samples[idx.to(samples.device)]
        extra = _tensor_points(points, samples)[:k]
        dtype = torch.promote_types(drawn.dtype, extra.dtype)
        batch = torch.cat([extra.to(dtype), drawn.to(dtype)]) if extra.shape[0] else drawn
        floating = [t.dtype for t in (samples, extra) if t.is_floating_point()]
        return batch, floating
    items = list(samples)
    k = min(len(items), max(2, math.ceil(side / 2)))
    chosen = torch.randperm(len(items), generator=generator)[:k].tolist()
    objects = [p for p in points if p is not None][:k]
    return [*objects, *(items[i] for i in chosen)], []


def _tensor_points(points: Sequence[Any], samples: torch.Tensor) -> torch.Tensor:
    """The points as one batch shaped like ``samples``, in their promoted floating type."""
    shape = tuple(samples.shape[1:])
    rows = []
    for p in points if not isinstance(points, torch.Tensor) else [points]:
        if p is None:
            continue
        t = torch.as_tensor(p).to(samples.device)
        if tuple(t.shape) == shape:
            rows.append(t.unsqueeze(0))
        elif tuple(t.shape[1:]) == shape:
            rows.append(t)
        else:
            raise ValueError(
                f"a point of shape {tuple(t.shape)} is not an output of shape {shape} (nor a "
                f"batch of them)"
            )
    if not rows:
        return samples[:0]
    dtype = samples.dtype
    for t in rows:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.cat([t.to(dtype) for t in rows])


def _length(outputs: Outputs) -> int:
    return outputs.shape[0] if isinstance(outputs, torch.Tensor) else len(outputs)


# ----------------------------------------------------------------------------- the distances
def _distance_matrix(metric: Metric, outputs: Outputs) -> tuple[torch.Tensor, list[torch.dtype]]:
    """``D[i, j] = d(outputs[i], outputs[j])`` (float64, on the CPU) from batched calls of the
    elementwise distance, and the floating types the distance returned."""
    m = _length(outputs)
    first = torch.arange(m).repeat_interleave(m)
    second = torch.arange(m).repeat(m)
    if isinstance(outputs, torch.Tensor):
        per_pair = max(1, outputs[0].numel())
        block = max(1, PAIRWISE_BUDGET // 4 // per_pair)
        index = first.to(outputs.device), second.to(outputs.device)
    else:
        block = PAIR_BLOCK
    parts, types = [], set()
    for start in range(0, m * m, block):
        stop = min(start + block, m * m)
        left: Outputs
        right: Outputs
        if isinstance(outputs, torch.Tensor):
            left, right = outputs[index[0][start:stop]], outputs[index[1][start:stop]]
        else:
            left = [outputs[i] for i in first[start:stop].tolist()]
            right = [outputs[j] for j in second[start:stop].tolist()]
        d = torch.as_tensor(metric(left, right))
        if d.shape != (stop - start,):
            raise ValueError(
                f"the distance {metric.name!r} returned distances of shape {tuple(d.shape)} for "
                f"a batch of {stop - start} pairs; it must return one distance per pair"
            )
        if d.is_floating_point():
            types.add(d.dtype)
        parts.append(d.detach().to("cpu", torch.float64))
    return torch.cat(parts).reshape(m, m), sorted(types, key=str)


def _check_values(name: str, d: torch.Tensor) -> None:
    if not bool(torch.isfinite(d).all()):
        bad = d[~torch.isfinite(d)][0]
        raise DistanceCheckError(
            f"{name} returned {float(bad)} on outputs of this model; a distance must be a finite "
            f"number for every two outputs"
        )
    if bool((d < 0).any()):
        raise DistanceCheckError(
            f"{name} returned a negative distance ({float(d.min()):.6g}) on outputs of this "
            f"model; a distance is never negative (if this is rounding, as in 1 - cosine "
            f'similarity of equal outputs, clamp it at 0 or use the built-in "cosine")'
        )


def _check_self_distances(name: str, d: torch.Tensor, slack: float, largest: float) -> None:
    diagonal = d.diagonal()
    worst = float(diagonal.max())
    if worst > slack:
        raise DistanceCheckError(
            f"{name} is not 0 between equal outputs: d(a, a) = {worst:.6g} for an output a of "
            f"this model (the largest distance seen is {largest:.6g}). The certificate needs "
            f"d(a, a) = 0; if the difference is only rounding, turn this check off with {SWITCH}"
        )


def _check_symmetry(name: str, d: torch.Tensor, r: float, slack: float) -> None:
    gap = (d - d.T).abs()
    bad = gap > r * torch.maximum(d, d.T) + slack
    if bool(bad.any()):
        i, j = (int(v) for v in torch.nonzero(bad)[0])
        raise DistanceCheckError(
            f"{name} is not symmetric on outputs of this model: d(a, b) = {float(d[i, j]):.6g} "
            f"but d(b, a) = {float(d[j, i]):.6g}. The certificate needs d(a, b) = d(b, a); "
            f"symmetrise it, for example FunctionMetric(lambda a, b: (fn(a, b) + fn(b, a)) / 2), "
            f"which keeps the triangle constant of fn. If the difference is only rounding, turn "
            f"this check off with {SWITCH}"
        )


def _check_triangle(metric: Metric, name: str, d: torch.Tensor, r: float, slack: float) -> None:
    """Every triple ``(i, j, k)``: ``d(i, k) <= gamma (d(i, j) + d(j, k))`` up to rounding."""
    gamma = float(metric.gamma)
    m = d.shape[0]
    need, broken = 0.0, 0
    step = max(1, TRIPLE_BLOCK // max(m * m, 1))
    for start in range(0, m, step):
        middle = slice(start, min(start + step, m))
        # sums[j, i, k] = d(i, j) + d(j, k) for the middle points j of this block
        sums = d[:, middle].T[:, :, None] + d[middle, :][:, None, :]
        far = d[None, :, :].expand_as(sums)
        broken += int((far > gamma * sums * (1 + r) + slack).sum())
        ratio = torch.where(sums > 0, far / torch.where(sums > 0, sums, 1.0), 0.0)
        ratio = torch.where((sums == 0) & (far > slack), math.inf, ratio)
        need = max(need, float(ratio.max()))
    if broken == 0:
        return
    if math.isinf(need):
        needed = "no gamma can hold: d(a, b) = d(b, c) = 0 for a triple with d(a, c) > 0"
    else:
        needed = f"the largest d(a, c) / (d(a, b) + d(b, c)) is {need:.6g}, the smallest gamma "
        needed += "these triples allow"
    raise DistanceCheckError(
        f"{name} breaks the relaxed triangle inequality d(a, c) <= gamma (d(a, b) + d(b, c)) "
        f"with its declared gamma = {gamma:g} on outputs of this model: {broken:,} of the "
        f"{m**3:,} triples tested break it; {needed}. A certificate computed with "
        f"gamma = {gamma:g} would state too small a radius. {_how_to_declare(metric, need)} "
        f"This check can refute a declared constant, never prove one; if you have a proof "
        f"that gamma = {gamma:g} holds, turn the check off with {SWITCH}."
    )


def _how_to_declare(metric: Metric, need: float) -> str:
    if need <= 2.0:
        value = "2.0"
        note = (
            " Squared Euclidean-type distances (a squared l2 distance, 1 - cosine similarity) "
            'have gamma = 2; the built-in names "squared_l2" and "cosine" declare it.'
        )
    else:
        value = f"G (a constant you can prove, at least {need:.4g})"
        note = ""
    if isinstance(metric, FunctionMetric):
        return f"Declare the constant: FunctionMetric(fn, gamma={value}).{note}"
    return f"Declare the constant: set gamma = {value} on your Metric subclass.{note}"
