"""The pairwise bound (ours, the default within its reach): the radius the smoothed function
finds at ``x'`` bounded by ``R_pair``, a low quantile over samples ``s`` of the radius of the
ball around ``s`` that holds ``ball_mass + Delta1'`` of the outputs, estimated from the center
samples (docs/algorithm.md, "The pairwise bound"; which ``eps_in`` it serves: "Which bound serves
each eps_in"). It replaces ``gamma (R_near + R_inner)``, which goes through the triangle
inequality, by a radius measured between samples directly:
``eps_out = gamma (R_outer + R_pair)``.

Two fixed parts of the center samples serve: the first ``rows`` (the samples ``s``) and the
next ``columns`` (the samples the radius around each ``s`` is measured to). Both are i.i.d.
outputs at ``x`` and independent of each other, which is all the estimate needs; that the center
was found from the same samples does not matter (the proof never uses the center here). The
counts are fixed before any sample is drawn, so that they cost nothing in confidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import torch

from .bounds import Bound, _sum_up, delta1, nearest_mass, quantile_rank, shifted_mass
from .center import batch_len, distances_to, take
from .metrics.base import Metric, Outputs

PAIR_ROWS = 1_000  # default samples s
PAIR_COLUMNS = 2_000  # default samples each row's radius is measured to
# with k sample candidates at x' (candidate mode), at most this many rows per candidate: the set
# of good candidates then holds a large share, whose quantile few rows pin down
ROWS_PER_CANDIDATE = 10
# g, the share of the rows' level allowed for rows whose own radius was underestimated, as a
# fraction of that level; Markov's inequality pays g's chance from R_pair's alpha
MARKOV_SHARE = 0.05
# rows whose radius is computed: the ROW_SLACK * k + ROW_EXTRA nearest the center, k the largest
# rank read among them (any subset gives a valid bound: the others count as infinite)
ROW_SLACK = 1.25
ROW_EXTRA = 10


class PairRanks(NamedTuple):
    """Per ``eps_in``: ``inner`` the rank among a row's distances to the other samples
    (``columns + 1`` where no rank qualifies) and ``near`` the rank among the rows' radii
    (``rows + 1`` likewise)."""

    inner: list[int]
    near: list[int]


def pair_delta1(n_center: int, alpha: float, mass: float = 0.5) -> float:
    """``Delta1'``: a ball of mass ``mass + Delta1'`` around a fixed point holds at least
    ``m = ball_rank(n_center, mass)`` of ``n_center - 1`` i.i.d. samples except with probability
    at most ``alpha`` (the run at ``x'`` counts a sample candidate's ball over the other samples,
    not itself): ``bounds.delta1`` counted over ``n_center - 1``, exact binomial."""
    return delta1(n_center, alpha, "binomial", mass, counted=n_center - 1)


class PairLevels(NamedTuple):
    """What ``R_pair`` rests on: the mass at ``x'`` of the good set of sample candidates
    (``near_mass``, as ``nearest_mass`` of ``alpha_nearest``), ``Delta1'`` (at the
    ``alpha_delta1`` share divided by the expected number of good candidates), and how the
    center samples are split."""

    near_mass: float
    delta1: float
    rows: int
    columns: int


def pair_levels(
    n_center: int,
    k: int,
    alpha_nearest: float,
    alpha_delta1: float,
    rows: int,
    columns: int,
    mass: float = 0.5,
) -> PairLevels:
    """The levels of the pairwise bound for ``k`` sample candidates at ``x'`` (at most
    ``ROWS_PER_CANDIDATE k`` rows). The run at ``x'`` fails to have a good candidate whose ball
    holds ``m`` samples with probability at most ``(1 - q)^k + k q alpha_d <= alpha_nearest +
    alpha_delta1`` (docs/algorithm.md), with ``q = near_mass`` and ``alpha_d = alpha_delta1 /
    (k q)`` rounded down."""
    q = nearest_mass(alpha_nearest, k)
    alpha_d = alpha_delta1 / (k * q)
    while Fraction(alpha_d) * k * Fraction(q) > Fraction(alpha_delta1):
        alpha_d = math.nextafter(alpha_d, 0.0)
    rows = min(rows, ROWS_PER_CANDIDATE * k)
    return PairLevels(q, pair_delta1(n_center, alpha_d, mass), rows, columns)


def pair_ranks(
    eps: np.ndarray,
    sigma: float,
    levels: PairLevels,
    alpha: float,
    mass: float = 0.5,
    slack: float = 0.0,
    bound: Bound = "binomial",
) -> PairRanks:
    """Ranks of ``R_pair`` at each ``eps_in``, the whole estimate at ``alpha``: half to the rows'
    rank at level ``p_near + g`` and half, through Markov's inequality, to the rows whose radius
    came out below their true one (each row's rank at ``beta = (alpha / 2) g``), with
    ``p_near = shifted_mass(near_mass)``, ``p_in = shifted_mass(mass + Delta1')`` and
    ``g = MARKOV_SHARE p_near``."""
    half = alpha / 2.0
    p_near = np.atleast_1d(shifted_mass(levels.near_mass, eps, sigma, slack))
    p_in = np.atleast_1d(shifted_mass(mass + levels.delta1, eps, sigma, slack))
    inner, near = [], []
    for pn, pi in zip(p_near, p_in, strict=True):
        g = MARKOV_SHARE * float(pn)
        level = min(_sum_up(float(pn), g), 1.0)
        beta = half * g
        while Fraction(beta) > Fraction(half) * Fraction(g):
            beta = math.nextafter(beta, 0.0)
        near.append(quantile_rank(level, levels.rows, half, bound))
        inner.append(quantile_rank(float(pi), levels.columns, beta, bound))
    return PairRanks(inner, near)


def pair_fits(ranks: PairRanks, levels: PairLevels) -> list[bool]:
    """Where both ranks stay within their samples (elsewhere ``R_pair`` is infinite)."""
    return [
        i <= levels.columns and k <= levels.rows
        for i, k in zip(ranks.inner, ranks.near, strict=True)
    ]


def pair_radii(
    metric: Metric, samples: Outputs, center: object, ranks: PairRanks, levels: PairLevels
) -> np.ndarray:
    """``R_pair`` per ``eps_in`` from the center samples: for the rows nearest the center, the
    distances to every column sample, exact (``Metric.distance``), read at the rank ``inner``;
    then the ``near``-th smallest of those radii, the other rows counting as infinite (which
    can only raise it). ``inf`` where a rank does not fit."""
    n_eps = len(ranks.near)
    fits = pair_fits(ranks, levels)
    out = np.full(n_eps, math.inf)
    if not any(fits):
        return out
    rows = samples[: levels.rows]
    columns = samples[levels.rows : levels.rows + levels.columns]
    assert batch_len(columns) == levels.columns
    largest = max(k for k, ok in zip(ranks.near, fits, strict=True) if ok)
    kept = min(levels.rows, math.ceil(ROW_SLACK * largest) + ROW_EXTRA)
    to_center = distances_to(metric, center, rows, check=False).double().cpu()
    nearest = torch.argsort(to_center, stable=True)[:kept].tolist()
    inner = np.asarray(ranks.inner)
    readable = inner <= levels.columns
    radii = np.full((kept, n_eps), math.inf)
    for row, index in enumerate(nearest):
        d = torch.sort(distances_to(metric, take(rows, index), columns, check=False)).values
        radii[row, readable] = d.double().cpu().numpy()[inner[readable] - 1]
    radii.sort(axis=0)
    for e, fit in enumerate(fits):
        if fit:
            out[e] = radii[ranks.near[e] - 1, e]
    return out


def pair_max_eps(
    sigma: float, levels: PairLevels, ranks_at: Callable[[np.ndarray], PairRanks]
) -> float:
    """Largest ``eps_in`` (to 1e-4 sigma) whose pairwise ranks (``ranks_at(eps)``, as
    ``pair_ranks`` gives them) fit their samples: both ranks grow with ``eps_in``. ``-inf`` when
    not even 0 fits. Only a report, like ``bounds.max_certifiable_eps``: each certificate checks
    its ranks itself."""

    def fits(h: float) -> bool:
        return pair_fits(ranks_at(np.array([h * sigma])), levels)[0]

    if not fits(0.0):
        return -math.inf
    lo, hi = 0.0, 1.0
    while fits(hi):
        lo, hi = hi, 2.0 * hi
        if hi > 64.0:
            return lo * sigma
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo * sigma
