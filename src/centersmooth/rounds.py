"""Certification samples drawn in rounds (``n_certify="auto"``): how many samples each round
ends with, the share of ``alpha_certify`` each round spends, and the rule that stops drawing.

Round ``r`` reads the order statistics of the first ``n_r`` certification distances at ranks for
``n_r`` samples and level ``alpha_r``; the ``alpha_r`` add up to at most ``alpha_certify``, so
with probability at least ``1 - alpha_certify`` every round's statistics bound their quantiles
at once, and then any round's certificate, and the smallest of them, is valid whatever rule
stopped the drawing (docs/algorithm.md, "Samples where an input needs them"). A fixed
``n_certify`` is the one round that spends all of ``alpha_certify``. Pure arithmetic on counts
and levels, like ``bounds``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .bounds import QuantileRanks

FIRST_ROUND = 5_000  # the first round's count with n_certify="auto" and separate samples (with
# shared check samples the first round is the check's n_check samples)
DEFAULT_CAP = 1_000_000
DEFAULT_TOLERANCE = 0.01


def schedule(first: int, cap: int) -> tuple[int, ...]:
    """Cumulative certification samples after each round: ``first``, then doubling, the last
    round ending at ``cap`` (``(cap,)`` when ``first >= cap``)."""
    counts = []
    n = first
    while n < cap:
        counts.append(n)
        n *= 2
    counts.append(cap)
    return tuple(counts)


def spend(alpha: float, rounds: int) -> tuple[float, ...]:
    """``alpha`` spent over ``rounds`` rounds, halving from one round to the next:
    ``alpha_r = alpha 2^(R - r) / (2^R - 1)``, so that early rounds, where drawing usually
    stops, keep most of it. The shares add up to at most ``alpha`` exactly (each is rounded
    down where float rounding would make the sum exceed it); one round spends all of it."""
    if rounds == 1:
        return (alpha,)
    total = 2**rounds - 1
    shares = [alpha * 2 ** (rounds - r) / total for r in range(1, rounds + 1)]
    while sum(Fraction(a) for a in shares) > Fraction(alpha):
        shares = [math.nextafter(a, 0.0) for a in shares]
    return tuple(shares)


def scaled_ranks(ranks: QuantileRanks, n_next: int, n_now: int) -> QuantileRanks:
    """Where the next round's order statistics (``ranks`` among ``n_next`` samples) are expected
    to fall among the ``n_now`` drawn so far: the rank ``ceil(k n_now / n_next)`` (the empirical
    quantile at the level ``k / n_next``), ``n_now + 1`` where ``k`` exceeds ``n_next``."""

    def scale(ks: list[int]) -> list[int]:
        return [n_now + 1 if k > n_next else max(1, math.ceil(k * n_now / n_next)) for k in ks]

    inner = scale(ranks.inner) if ranks.inner is not ranks.outer else None
    outer = scale(ranks.outer)
    near = None if ranks.near is None else scale(ranks.near)
    return QuantileRanks(outer, outer if inner is None else inner, near)


def another_round_pays(
    current: np.ndarray, predicted: np.ndarray, pursued: np.ndarray, tolerance: float
) -> bool:
    """Whether another round is expected to lower some pursued ``eps_out`` by a share of at
    least ``tolerance``: one not certified yet always is, a certified one when the next round's
    expected ``eps_out`` is below ``(1 - tolerance)`` times the best so far. ``pursued`` leaves
    out the ``eps_in`` that no round up to the cap can certify."""
    for now, then, wanted in zip(current, predicted, pursued, strict=True):
        if not wanted:
            continue
        if not math.isfinite(float(now)) or float(then) < (1.0 - tolerance) * float(now):
            return True
    return False
