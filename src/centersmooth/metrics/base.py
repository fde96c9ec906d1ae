"""The distance interface the smoothing code relies on.

A :class:`Metric` is a batched distance ``d(a_batch, b_batch) -> 1-d tensor`` that also declares
what the certificate needs: the relaxed-triangle constant ``gamma`` (``d(a, c) <= gamma * (d(a, b)
+ d(b, c))``), an upper bound on its values where one exists, a pairwise form for the center search,
and the central points of a cloud of outputs that may join the center candidates.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import numpy as np
import torch

Outputs = Any  # a tensor batch (first dimension = batch) or a list of Python objects
PAIRWISE_BUDGET = 2**25  # elements of an intermediate (rows x samples x features) block

# The kinds of output batches a distance may take (``Metric.takes``).
TENSORS, STRINGS, TOKENS, SETS = "tensors", "strings", "tokens", "sets"
_KIND_TEXT = {
    TENSORS: "tensor/array outputs (a batch with a first batch dimension)",
    STRINGS: "lists of strings (str)",
    TOKENS: "lists of token sequences (each a list or tuple of hashable tokens, such as words)",
    SETS: "lists of Python sets or frozensets",
}


_SET_TYPES = (frozenset, set)
_SEQUENCE_TYPES = (list, tuple)  # token sequences: one kind for a whole batch, never with str


class OutputTypeError(TypeError):
    """A distance was given outputs of a kind it does not take (for example strings to ``l2``)."""


class Metric:
    """A distance on batches of outputs.

    Subclasses implement :meth:`distance`. ``gamma`` is 1 for metrics and pseudo-metrics, 2 for
    sums of squared Euclidean distances (LPIPS). ``upper`` is the largest value the distance can
    take (``None`` if unbounded). Batches are tensors whose first dimension is the batch, or lists
    of Python objects (strings, sets) for the distances that take them.
    """

    name: str = "metric"
    gamma: float = 1.0
    upper: float | None = None
    # distances with the same key offer the same central points, computed once per sample set
    central_key: str | None = None
    # the kinds of output batches the distance takes (TENSORS, STRINGS, SETS); None: anything
    takes: tuple[str, ...] | None = None
    # whether the pairwise bound serves this distance by default (pairwise_bound=None): the
    # built-in distances between vectors and images, cheap to evaluate, on which it was tighter
    # at every eps_in measured. Not on outputs that repeat exactly or nearly (boxes, masks,
    # sets, strings, a confident classifier's probability vectors): it reads its quantiles at
    # higher levels, which there can jump to a far atom (a face box certified 1 instead of
    # 0.25); nor LPIPS, a network per distance, as its rows take up to pair_rows x pair_columns
    # distances per input. A distance of your own opts in here or with pairwise_bound=True
    pair_default: bool = False

    def __call__(self, a: Outputs, b: Outputs) -> torch.Tensor:
        """Distances ``d(a[i], b[i])`` for two batches of equal length."""
        return self.distance(a, b)

    def distance(self, a: Outputs, b: Outputs) -> torch.Tensor:
        raise NotImplementedError

    def pairwise(self, a: Outputs, b: Outputs) -> torch.Tensor:
        """Matrix ``D[i, j] = d(a[i], b[j])``; override with a fast form where one exists.

        The default evaluates :meth:`distance` on blocks of rows so that no block holds more than
        ``PAIRWISE_BUDGET`` elements.
        """
        if not isinstance(a, torch.Tensor):
            rows = [self.distance([x] * len(b), b) for x in a]
            return torch.stack(rows) if rows else torch.empty(0, len(b))
        n_b = b.shape[0]
        per_row = max(1, n_b * (b[0].numel() if n_b else 1))
        chunk = max(1, PAIRWISE_BUDGET // per_row)
        blocks = []
        for start in range(0, a.shape[0], chunk):
            part = a[start : start + chunk]
            left = part.unsqueeze(1).expand(part.shape[0], n_b, *part.shape[1:])
            right = b.unsqueeze(0).expand(part.shape[0], *b.shape)
            d = torch.as_tensor(
                self.distance(left.reshape(-1, *b.shape[1:]), right.reshape(-1, *b.shape[1:]))
            )
            if d.shape != (part.shape[0] * n_b,):
                raise ValueError(
                    f"the metric returned distances of shape {tuple(d.shape)} for a batch of "
                    f"{part.shape[0] * n_b} pairs; it must return one distance per pair"
                )
            blocks.append(d.reshape(part.shape[0], n_b))
        return torch.cat(blocks) if blocks else torch.empty(0, n_b)

    def euclidean_embedding(self, outputs: Outputs) -> torch.Tensor | None:
        """Rows ``e(o)`` such that ``d(a, b)`` is a nondecreasing function of
        ``||e(a) - e(b)||_2`` (inverse: :meth:`euclidean_radius`), or ``None``.

        Lets the all-pairs center search rule candidates out from cheap lower bounds on the
        distances; the chosen center does not change.
        """
        return None

    def euclidean_radius(self, distance: float) -> float:
        """The embedding distance at which this distance reaches ``distance`` (see above)."""
        raise NotImplementedError(f"{self.name} has no Euclidean embedding")

    def central_candidates(self, samples: Outputs) -> Outputs | None:
        """Points of the output space central for ``samples`` (docs/algorithm.md, "Predict
        (Algorithm 1)", step 2).

        They join the center candidates; ``None`` if the space has none to offer.
        """
        return None

    def diameter(self, samples: Outputs) -> float | None:
        """The largest distance two outputs can have, or ``None`` if there is none to state.

        A certificate whose ``eps_out`` reaches it says nothing: every two outputs are that close.
        It comes from the distance itself (``upper``, the default here) or from the kind of
        outputs ``samples`` shows (probability vectors, strings of bounded length, ...), in which
        case it holds for outputs of that kind; each distance documents which. It only serves to
        flag a radius as saying nothing, never to shrink one.
        """
        return self.upper

    def invalid_outputs(self, batch: Outputs, rounding_eps: float) -> torch.Tensor | None:
        """Per output of a batch, whether this distance is not defined on it (a bool tensor on
        the batch's device, computed without waiting for the device), or ``None`` when it is
        defined on every output of the kinds it takes. ``rounding_eps`` is the rounding unit of
        the float type the model computes in. The sampling loops check every output with it
        and raise :meth:`invalid_message` after the stage (``sampling.OutputMonitor``)."""
        return None

    def invalid_message(self) -> str:
        """What is wrong with outputs :meth:`invalid_outputs` refuses, and what to do."""
        return f"the distance {self.name!r} is not defined on the model's outputs"

    def accept(self, batch: Outputs) -> Outputs:
        """``batch`` if it is of a kind this distance takes (``takes``), else an
        :class:`OutputTypeError` naming the distance, what it takes and what it got.

        NumPy arrays of numbers become tensors and tuples become lists; anything else is returned
        as it is.
        """
        kinds = self.takes
        if kinds is None:
            return batch
        if isinstance(batch, np.ndarray) and batch.dtype != object:
            batch = torch.from_numpy(np.ascontiguousarray(batch))
        if isinstance(batch, torch.Tensor):
            if TENSORS in kinds and batch.dim() >= 1:
                return batch
        elif isinstance(batch, list | tuple | np.ndarray):
            items = list(batch)
            # exact types first: an ABC isinstance check costs microseconds per item
            if (
                (STRINGS in kinds and all(type(x) is str or isinstance(x, str) for x in items))
                or (TOKENS in kinds and all(type(x) in _SEQUENCE_TYPES for x in items))
                or (
                    SETS in kinds
                    and all(type(x) in _SET_TYPES or isinstance(x, AbstractSet) for x in items)
                )
            ):
                return items
        raise OutputTypeError(
            f"the distance {self.name!r} takes {' or '.join(_KIND_TEXT[k] for k in kinds)}; "
            f"the model returned {describe_outputs(batch)}"
        )

    def accept_pair(self, a: Outputs, b: Outputs) -> tuple[Outputs, Outputs]:
        """Both batches through :meth:`accept`, refusing a tensor batch against a list."""
        a, b = self.accept(a), self.accept(b)
        if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
            raise OutputTypeError(
                f"the distance {self.name!r} compares outputs of one kind with each other; got "
                f"{describe_outputs(a)} and {describe_outputs(b)}"
            )
        return a, b

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, gamma={self.gamma})"


class FunctionMetric(Metric):
    """A user's callable ``fn(a_batch, b_batch) -> distances`` as a :class:`Metric`.

    ``gamma`` must be the callable's relaxed-triangle constant (1 for a true metric); the
    certificate's factor ``gamma * (1 + 2 gamma)`` depends on it.
    """

    def __init__(
        self,
        fn: Callable[[Outputs, Outputs], Any],
        gamma: float = 1.0,
        name: str | None = None,
        upper: float | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"metric function must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = str(name or getattr(fn, "__name__", "custom"))
        self.gamma, self.upper = gamma, upper
        check_constants(self)
        self.gamma = float(gamma)

    def distance(self, a: Outputs, b: Outputs) -> torch.Tensor:
        return torch.as_tensor(self.fn(a, b))


def describe_outputs(batch: Outputs) -> str:
    """A few words on what a batch of outputs is, for error messages ("a list of str")."""
    if isinstance(batch, torch.Tensor):
        return f"a tensor of shape {tuple(batch.shape)}"
    if isinstance(batch, np.ndarray):
        return f"a NumPy array of dtype {batch.dtype} and shape {batch.shape}"
    if isinstance(batch, list | tuple):
        kind = type(batch).__name__
        names = sorted({type(x).__name__ for x in batch})
        if not names:
            return f"an empty {kind}"
        return f"a {kind} of {' and '.join(names)}"
    return f"a {type(batch).__name__}"


def check_constants(metric: Metric) -> Metric:
    """Refuse a ``gamma`` or ``upper`` the certificate could not rest on: ``eps_out`` is
    ``gamma (1 + 2 gamma) R`` capped at ``upper``, so a gamma below 1 or a cap below the
    distance's true range would state too small a radius."""
    gamma, upper = metric.gamma, metric.upper
    if not (is_real(gamma) and math.isfinite(gamma) and gamma >= 1.0):
        raise ValueError(f"{metric.name}: gamma must be a finite number >= 1, got {gamma!r}")
    if upper is not None and not (is_real(upper) and upper > 0):
        raise ValueError(f"{metric.name}: upper must be None or a positive number, got {upper!r}")
    return metric


def is_real(value: object) -> bool:
    """A real number given as a Python or NumPy scalar (``True`` is not one)."""
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)


def flat(batch: torch.Tensor) -> torch.Tensor:
    """View a batch ``(n, ...)`` as ``(n, features)``."""
    return batch.reshape(batch.shape[0], -1)


def float_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` and ``b`` in one floating dtype (their promoted type, or the default float for
    integers), so that differences of integer outputs cannot wrap around."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return a.to(dtype), b.to(dtype)


# ----------------------------------------------------------------------------- from a file
def parse_file_spec(spec: str, flag: str, what: str = "name") -> tuple[Path, str]:
    """``"path/to/file.py:name"`` -> (resolved path, name), with checked parts; ``flag`` (such
    as ``--model``) names the option in the messages."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise ValueError(f"{flag} must look like path/to/file.py:{what}, got {spec!r}")
    if not name.isidentifier():
        raise ValueError(f"{flag}: {name!r} is not a Python name (in {spec!r})")
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: file {path_text} does not exist")
    if path.suffix != ".py":
        raise ValueError(f"{flag}: {path_text} is not a Python file (.py)")
    return path, name


def import_file(path: Path, flag: str) -> Any:
    """The Python file at ``path`` as a module, imported once per process (under a name made
    from its path, so that two files of one name do not clash)."""
    key = "centersmooth_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{flag}: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    return module


def is_file_spec(metric: object) -> bool:
    """Whether ``metric`` names a distance in a Python file (``path/to/file.py:name``)."""
    return isinstance(metric, str) and ".py:" in metric


def load_metric_file(spec: str) -> Metric:
    """The distance ``name`` of the Python file in ``spec`` (``path/to/file.py:name``), as the
    command line's ``--metric`` takes it: a :class:`Metric` object or subclass (its declared
    ``gamma``), or a function ``d(a_batch, b_batch) -> distances`` (``gamma = 1``, named after
    ``name``). Not built in, it is checked like any distance of yours before a certificate rests
    on it (``checks.check_distance``)."""
    path, name = parse_file_spec(spec, "--metric")
    value = getattr(import_file(path, "--metric"), name, None)
    if value is None:
        raise ValueError(f"--metric: {path} defines no {name!r}")
    if isinstance(value, type) and issubclass(value, Metric):
        value = value()
    if isinstance(value, Metric):
        return check_constants(value)
    if not callable(value):
        raise ValueError(
            f"--metric: {name!r} in {path} is not callable: give a distance d(a_batch, b_batch) "
            "-> distances, or a Metric (FunctionMetric(d, gamma=...) to declare its constant)"
        )
    return FunctionMetric(value, name=name)
