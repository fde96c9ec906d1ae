"""What center smoothing returns: a ``Prediction`` (Algorithm 1) and a ``Certificate``
(Algorithm 2), each with the numbers behind its decision and a plain-JSON form."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch


class UncertifiableRadiusWarning(UserWarning):
    """An ``eps_in`` exceeds ``max_eps_in``, the largest radius the settings can certify: its
    ``eps_out`` is ``inf`` (``Certificate.eps_out_reason`` says so). Issued once per call;
    ``warnings.simplefilter("ignore", UncertifiableRadiusWarning)`` silences it."""


def radius_advice(max_eps_in: float) -> str:
    """What raises ``max_eps_in``: the part of every message about a radius beyond it."""
    return (
        f"max_eps_in={max_eps_in:.4g} is the largest radius these settings can certify; a "
        "larger sigma raises it in proportion, more certification samples (n_certify) slowly"
    )


@dataclass(frozen=True)
class Prediction:
    """Output of the smoothed function at one input.

    ``center`` is ``None`` and ``radius`` is ``inf`` when the procedure abstains. Otherwise, with
    probability at least ``1 - alpha_center``, the ball ``B(center, radius)`` holds at least
    ``1/2 - delta`` (``ball_mass - delta``) of the base function's output mass under the
    smoothing noise.
    """

    center: Any
    radius: float
    abstained: bool
    delta1: float  # margin of the optimal ball (mass ball_mass + delta1) from the center samples
    p_low: float  # lower confidence bound on the mass of B(center, radius) from the check samples
    n_center: int
    n_check: int
    check_level: float  # p_low must exceed it strictly: ball_mass - delta
    delta: float  # delta1 must not exceed it
    check_count: int | None = None  # how many of the n_check samples fell in the center's ball
    # why the procedure abstained: the test that failed, its numbers and the cause they show
    # (more check samples when p_low is within its sampling error of the level, else spread);
    # None when it did not abstain
    abstain_reason: str | None = None

    @property
    def forward_passes(self) -> int:
        """Forward passes of the base function this prediction cost: ``n_center + n_check``."""
        return self.n_center + self.n_check

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (lists for arrays and tensors), and ``center_type``: what the
        center was (``"torch.float32"``, ``"numpy.float64"``, ``"frozenset"``, ``"tuple"``,
        ...), so that :meth:`from_dict` gives it back as it was."""
        record = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        record["center_type"] = _type_of(self.center)
        record["forward_passes"] = self.forward_passes
        return record

    def to_json(self) -> str:
        """Strict JSON (non-finite numbers as ``null``)."""
        return _json(self.to_dict())

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Prediction:
        """The prediction a :meth:`to_dict` (or parsed :meth:`to_json`) record describes: the
        center in its type (a tensor or array with its dtype, on the CPU), ``null`` radii as
        ``inf``."""
        values = {f.name: record[f.name] for f in fields(cls) if f.name in record}
        values["center"] = _restore(record.get("center"), record.get("center_type"))
        values["radius"] = _number(record["radius"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Prediction:
        """:meth:`from_dict` of a :meth:`to_json` text."""
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Certificate:
    """A robustness certificate for one input.

    For each ``eps_in`` and each ``x'`` with ``||x' - x||_2 <= eps_in`` on its own: with
    probability at least ``1 - alpha_center - alpha_certify`` (over this certification and the
    smoothed function's run at ``x'``), either that run abstains or
    ``d(center(x), center(x')) <= eps_out``. This holds for either bound whether that run draws
    fresh noise, uses another seed or reuses this certification's seed, as long as ``x'`` is not
    chosen from the noise of that run; it assumes real-valued Gaussian noise (docs/algorithm.md,
    "What the guarantee assumes").
    ``eps_out`` is ``inf`` where the procedure abstained or where ``eps_in`` exceeds
    ``max_eps_in``. Scalar fields when ``eps_in`` was a number, arrays aligned with it when it was
    a sequence.
    """

    eps_in: float | np.ndarray
    eps_out: float | np.ndarray
    abstained: bool
    center: Any
    radius: float  # radius of the center's ball (from predict): median distance at ball_mass 1/2
    # R_outer (the paper's R-hat): upper bound on the p(eps_in)-quantile distance
    quantile_radius: float | np.ndarray
    # R_inner: the ball of mass ball_mass + delta1 at x' (equal to quantile_radius in the
    # paper's bound at ball_mass 1/2)
    inner_radius: float | np.ndarray
    # R_near: the ball in which a sample candidate lands at x' (inf without nearest_candidate)
    near_radius: float | np.ndarray
    smoothing_error: float | None  # d(center, f(x)); None when abstained
    max_eps_in: float  # largest eps_in these sample counts can certify
    prediction: Prediction
    # True where eps_out is finite but at or above output_diameter: the certificate says nothing
    vacuous: bool | np.ndarray = False
    # the largest distance two outputs can have, where the distance knows it or the outputs show
    # it (None: unbounded or unknown)
    output_diameter: float | None = None
    # forward passes of the base function the input cost: its n_center center samples, the
    # check's and certification's samples drawn (N = max(n_check, n_certify) with shared check
    # samples, n_check + n_certify without, n_check alone when every distance abstained) and
    # the clean f(x). Per input in a batch; the distances of one input share them.
    forward_passes: int = 0
    # the certification samples whose distances gave the order statistics (0 when abstained)
    certification_samples: int = 0
    # R_pair: the pairwise bound's radius at x', from the center samples (inf without it)
    pair_radius: float | np.ndarray = math.inf

    @property
    def abstain_reason(self) -> str | None:
        """Why the procedure abstained (see :attr:`Prediction.abstain_reason`)."""
        return self.prediction.abstain_reason

    @property
    def eps_out_reason(self) -> str | None | list[str | None]:
        """Why ``eps_out`` is ``inf``, per ``eps_in`` (``None`` where it is finite): the
        abstention (:attr:`abstain_reason`), or an ``eps_in`` beyond ``max_eps_in``. A string or
        ``None`` when ``eps_in`` was a number, a list aligned with it when it was a sequence."""
        eps_in = np.atleast_1d(np.asarray(self.eps_in, dtype=float))
        eps_out = np.atleast_1d(np.asarray(self.eps_out, dtype=float))
        reasons: list[str | None] = []
        for e, out in zip(eps_in, eps_out, strict=True):
            if math.isfinite(out):
                reasons.append(None)
            elif self.abstained:
                reasons.append(f"abstained: {self.abstain_reason}")
            elif e > self.max_eps_in:
                reasons.append(
                    f"eps_in={e:.4g} exceeds max_eps_in: {radius_advice(self.max_eps_in)}"
                )
            else:
                reasons.append("the quantile this eps_in needs is beyond the n_certify samples")
        return reasons[0] if np.ndim(self.eps_in) == 0 else reasons

    @property
    def certified(self) -> bool | np.ndarray:
        """Where the certificate says something: a finite ``eps_out`` that is not vacuous."""
        finite = np.isfinite(np.asarray(self.eps_out, dtype=float)) & ~np.asarray(self.vacuous)
        return bool(finite) if finite.ndim == 0 else finite

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (lists for arrays and tensors), the prediction as a nested dict."""
        record = {
            f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "prediction"
        }
        record["center_type"] = _type_of(self.center)
        record["abstain_reason"] = self.abstain_reason
        record["eps_out_reason"] = self.eps_out_reason
        record["prediction"] = self.prediction.to_dict()
        return record

    def to_json(self) -> str:
        """Strict JSON (non-finite numbers as ``null``)."""
        return _json(self.to_dict())

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Certificate:
        """The certificate a :meth:`to_dict` (or parsed :meth:`to_json`) record describes:
        ``to_json`` of the result is the text it came from. The radii aligned with ``eps_in``
        come back as arrays when ``eps_in`` was a sequence, ``null`` radii (``eps_out``,
        ``radius``, the quantile radii, ``max_eps_in``) as ``inf``, ``smoothing_error`` as
        ``None`` when abstained (``inf`` otherwise), the center in its type (see
        :meth:`Prediction.from_dict`). ``abstain_reason`` and ``eps_out_reason`` follow from
        the rest."""
        aligned = ("eps_in", "eps_out", "quantile_radius", "inner_radius", "near_radius")
        values = {
            f.name: record[f.name]
            for f in fields(cls)
            if f.name in record and f.name != "prediction"
        }
        for name in aligned:
            values[name] = _numbers(record[name])
        if "pair_radius" in record:  # records from before the pairwise bound have none
            values["pair_radius"] = _numbers(record["pair_radius"])
        values["vacuous"] = _flags(record.get("vacuous", False))
        values["radius"] = _number(record["radius"])
        values["max_eps_in"] = _number(record["max_eps_in"])
        if not record["abstained"]:
            values["smoothing_error"] = _number(record["smoothing_error"])
        values["center"] = _restore(record.get("center"), record.get("center_type"))
        values["prediction"] = Prediction.from_dict(record["prediction"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Certificate:
        """:meth:`from_dict` of a :meth:`to_json` text."""
        return cls.from_dict(json.loads(text))


def _plain(value: Any) -> Any:
    """``value`` in plain Python types: lists for tensors and arrays, sorted lists for sets."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset):
        items = [_plain(v) for v in value]
        try:
            return sorted(items)
        except TypeError:  # items of several types (str, int, tuples...): a fixed order anyway
            return sorted(
                items, key=lambda v: (type(v).__name__, json.dumps(v, sort_keys=True, default=str))
            )
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _type_of(center: Any) -> str | None:
    """What a center is, for :func:`_restore`: ``"torch.<dtype>"``, ``"numpy.<dtype>"`` or the
    name of its Python type (``None`` for no center)."""
    if center is None:
        return None
    if isinstance(center, torch.Tensor):
        return str(center.dtype)
    if isinstance(center, np.ndarray):
        return f"numpy.{center.dtype}"
    return type(center).__name__


def _restore(value: Any, kind: str | None) -> Any:
    """A center from its plain form and :func:`_type_of`: tensors and arrays with their dtype
    (on the CPU), sets as frozensets, tuples as tuples and lists as lists (their items that were
    tuples as tuples), the rest as parsed."""
    if value is None or kind is None:
        return value
    if kind.startswith("torch."):
        return torch.tensor(_numbers(value), dtype=getattr(torch, kind.removeprefix("torch.")))
    if kind.startswith("numpy."):
        return np.asarray(_numbers(value), dtype=np.dtype(kind.removeprefix("numpy.")))
    if kind in ("frozenset", "set"):
        return frozenset(_hashable(v) for v in value)
    if kind == "tuple":
        return tuple(_hashable(v) for v in value)
    if kind == "list":
        return [_hashable(v) for v in value]
    return value


def _hashable(value: Any) -> Any:
    """JSON lists back as tuples (items of sets and token tuples are hashable)."""
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _number(value: Any) -> float:
    """A float from JSON, ``null`` as ``inf`` (strict JSON's form of a non-finite number)."""
    return math.inf if value is None else float(value)


def _numbers(value: Any) -> Any:
    """A number or (nested) lists of numbers, ``null`` as ``inf``; lists as float arrays."""
    if isinstance(value, list):
        return np.array(_nested(value), dtype=float)
    return _number(value)


def _nested(value: Any) -> Any:
    return [_nested(v) for v in value] if isinstance(value, list) else _number(value)


def _flags(value: Any) -> bool | np.ndarray:
    return np.array(value, dtype=bool) if isinstance(value, list) else bool(value)


def _json(record: dict[str, Any]) -> str:
    def finite(value: Any) -> Any:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, list):
            return [finite(v) for v in value]
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        return value

    return json.dumps(finite(record), allow_nan=False)
