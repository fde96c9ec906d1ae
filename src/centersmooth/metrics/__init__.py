"""Batched distances on model outputs, and the registry of their names.

``get_metric(name)`` returns a :class:`Metric`; ``available_metrics()`` lists the names. A new
distance is one new module plus one line in ``_REGISTRY``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from .base import FunctionMetric, Metric, OutputTypeError, check_constants
from .boxes import EMPTY_BOX, BoxJaccardDistance
from .checks import DistanceCheckError, check_distance, needs_check
from .image import TotalVariationDistance
from .lpips import LPIPSDistance
from .masks import HammingDistance, MaskJaccardDistance
from .probability import HellingerDistance, TotalVariationProbability
from .strings import LevenshteinDistance, NormalizedLevenshteinDistance
from .vector import AngularDistance, CosineDistance, LpDistance, SquaredL2Distance

_REGISTRY: dict[str, Callable[[], Metric]] = {
    "l2": lambda: LpDistance(2, "l2"),
    "l1": lambda: LpDistance(1, "l1"),
    "linf": lambda: LpDistance(float("inf"), "linf"),
    "angular": AngularDistance,
    "cosine": CosineDistance,
    "squared_l2": SquaredL2Distance,
    "tv1": lambda: TotalVariationDistance(1, "tv1"),
    "tv2": lambda: TotalVariationDistance(2, "tv2"),
    "jaccard": BoxJaccardDistance,
    "mask_jaccard": MaskJaccardDistance,
    "total_variation": TotalVariationProbability,
    "hellinger": HellingerDistance,
    "hamming": HammingDistance,
    "levenshtein": LevenshteinDistance,
    "levenshtein_normalized": NormalizedLevenshteinDistance,
    "lpips": lambda: LPIPSDistance("alex"),
    "lpips_vgg": lambda: LPIPSDistance("vgg"),
}


def register_metric(name: str, factory: Callable[[], Metric]) -> None:
    """Add a distance under ``name`` (refuses a name already taken, in any case)."""
    taken = [known for known in _REGISTRY if known.casefold() == name.casefold()]
    if taken:
        raise ValueError(f"a metric named {taken[0]!r} is already registered")
    _REGISTRY[name] = factory


def available_metrics() -> list[str]:
    """The registered metric names, sorted."""
    return sorted(_REGISTRY)


def registered_name(name: str) -> str:
    """The registry name ``name`` stands for: itself, or the one name equal to it ignoring case.
    Anything else is a ``ValueError`` that suggests the closest names (a misspelling such as
    ``levenstein``) and lists them all."""
    if name in _REGISTRY:
        return name
    folded = {known.casefold(): known for known in _REGISTRY}
    if name.casefold() in folded:
        return folded[name.casefold()]
    close = difflib.get_close_matches(name.casefold(), list(folded), n=2, cutoff=0.5)
    hint = f" (did you mean {' or '.join(repr(folded[c]) for c in close)}?)" if close else ""
    raise ValueError(
        f"unknown metric {name!r}{hint}; known metrics: {', '.join(available_metrics())}"
    )


def get_metric(metric: str | Metric | Callable[..., Any]) -> Metric:
    """A :class:`Metric` from a registry name (any case: ``"L2"`` is ``"l2"``), a Metric, or a
    callable (taken with ``gamma = 1``). An unknown name is refused with the closest known one.

    For a callable whose relaxed-triangle constant is not 1, wrap it yourself:
    ``FunctionMetric(fn, gamma=2.0)`` (or use the built-in ``"squared_l2"`` / ``"cosine"``).
    Distances that are not built in are tested before a certificate rests on them
    (:func:`check_distance`).
    """
    if isinstance(metric, Metric):
        return check_constants(metric)
    if isinstance(metric, str):
        return _REGISTRY[registered_name(metric)]()
    if callable(metric):
        return FunctionMetric(metric)
    raise TypeError(
        f"metric must be a registry name, a Metric or a callable, got {type(metric).__name__}"
    )


__all__ = [
    "EMPTY_BOX",
    "DistanceCheckError",
    "FunctionMetric",
    "Metric",
    "OutputTypeError",
    "available_metrics",
    "check_distance",
    "get_metric",
    "needs_check",
    "register_metric",
    "registered_name",
]
