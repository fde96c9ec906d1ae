"""Noisy copies of the inputs pushed through the base function, in seeded batches on the device.

The inputs of one call are prepared once (``PreparedInputs``: float tensors on the device, each
with its own seeded noise stream); ``noisy_outputs`` then yields each input's share of shared
forward passes, stage by stage.

The base function may be an ``nn.Module`` (evaluated in eval mode under ``torch.no_grad()``, its
modules' train/eval flags restored afterwards), a callable on torch batches, or a callable on
NumPy batches (chosen by passing a NumPy input).
Outputs are tensor batches, NumPy arrays (converted to tensors) or lists of Python objects.
Every batch is checked: right length, no NaN or infinity (or, with ``nan_outputs="outside"``,
such outputs at infinite distance from every point), and outputs a distance is defined on (the
probability vectors of ``total_variation`` and ``hellinger``), from flags read once per stage.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import grid_noise
from .metrics.base import Metric, Outputs


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, refused in one line (``ValueError``) when this machine
    does not have it: CUDA without a CUDA device (a CPU-only build of torch, no GPU or driver),
    a CUDA ordinal beyond the devices present, MPS where there is none, or no device name."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {str(device)!r} is not a device torch knows ({err})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r}: torch finds no CUDA device on this machine (a CPU-only "
                "build of torch, or no GPU or driver); use the CPU (device 'cpu')"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device {str(device)!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {str(device)!r}: no MPS device on this machine")
    return dev


def resolve_device(device: str | torch.device | None, base_function: Any) -> torch.device:
    """``device`` if given (checked: :func:`check_device`), else the device of a module's first
    parameter, else the CPU."""
    if device is not None:
        return check_device(device)
    if isinstance(base_function, nn.Module):
        for param in base_function.parameters():
            return param.device
        for buffer in base_function.buffers():
            return buffer.device
    return torch.device("cpu")


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A generator on ``device``: seeded for bit-for-bit reproducibility, else freshly seeded."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
HALF_DTYPES = (torch.float16, torch.bfloat16)


def seed_at(seed: int, index: int) -> int:
    """The seed of the input at ``index`` of a batch or a run seeded with ``seed``:
    ``(seed + index) mod 2**64``. The one rule for every entry point: ``certify(x, seed=s)``,
    ``CenterSmoothing(seed=s).certify(x)``, the first input of ``certify_batch`` and the input of
    index 0 of ``centersmooth certify --seed s`` all draw the noise of seed ``s``. Each input's
    noise comes from its own seed alone (``NoiseStream``), so it is the same whichever worker
    or batch the input lands in."""
    return (int(seed) + int(index)) % 2**64


ESTIMATOR_METHODS = ("transform", "predict")  # tried in this order on a model that is no callable


def model_function(model: Any) -> Callable[..., Any]:
    """The function of a batch that ``model`` stands for: the model itself when it is callable
    (a function, an ``nn.Module``), else the ``transform`` of a scikit-learn estimator (PCA, a
    pipeline ending in a transformer), else its ``predict``."""
    if callable(model):
        return model
    for name in ESTIMATOR_METHODS:
        method = getattr(model, name, None)  # a pipeline hides the methods its last step lacks
        if callable(method):
            return method
    raise TypeError(
        f"base_function must be an nn.Module, a function of a batch or an estimator with a "
        f"transform or predict method, got a {type(model).__name__} without either; pass the "
        "method that maps a batch of inputs to a batch of outputs (for example "
        f"{type(model).__name__.lower()}.decision_function)"
    )


OutputSelector = str | int | Callable[[Any], Any] | None


class SeveralOutputsError(TypeError):
    """The model returns several outputs (a dict or a tuple of batches) and none was chosen, or
    the one chosen is not among them; the message names the outputs there are."""


def check_output_selector(output: OutputSelector) -> OutputSelector:
    if output is None or callable(output):
        return output
    if isinstance(output, bool) or not isinstance(output, str | int):
        raise TypeError(
            "output must be a key or a position (str or int) of the model's outputs, or a "
            f"function of them, got {type(output).__name__}"
        )
    return output


def _parts(raw: Any) -> dict[Any, Any] | None:
    """The outputs of a model that returns several, by key or position (``None`` for one): a
    dict, a named tuple, or a tuple whose items are all batches (tensors or arrays)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, tuple):
        fields = getattr(raw, "_fields", None)
        if fields is not None:
            return dict(zip(fields, raw, strict=True))
        if raw and all(isinstance(item, torch.Tensor | np.ndarray) for item in raw):
            return dict(enumerate(raw))
    return None


def _describe_part(value: Any) -> str:
    if isinstance(value, torch.Tensor | np.ndarray):
        return f"{'tensor' if isinstance(value, torch.Tensor) else 'array'} {tuple(value.shape)}"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def _choices(parts: dict[Any, Any], per_input: bool = False) -> str:
    described = ", ".join(f"{key!r} ({_describe_part(v)})" for key, v in parts.items())
    return f"for each input {described}" if per_input else described


def _pick(parts: dict[Any, Any], output: str | int, per_input: bool = False) -> Any:
    keys = [output]
    if isinstance(output, str) and output.lstrip("-").isdigit():
        keys.append(int(output))  # "0" from the command line is a position
    positions = list(parts.values())
    for key in keys:
        if key in parts:
            return parts[key]
        if isinstance(key, int) and all(isinstance(k, str) for k in parts):  # a named tuple
            if -len(positions) <= key < len(positions):
                return positions[key]
    raise SeveralOutputsError(
        f"output={output!r} names none of the model's outputs: it returns "
        f"{_choices(parts, per_input)}"
    )


def _stacked(items: list[Any]) -> Any:
    """Per-input tensors (or arrays) of one shape as one batch; anything else as the list."""
    if all(isinstance(item, torch.Tensor) for item in items):
        if len({tuple(item.shape) for item in items}) == 1:
            return torch.stack(items)
    elif all(isinstance(item, np.ndarray) and item.dtype != object for item in items):
        if len({item.shape for item in items}) == 1:
            return np.stack(items)
    return items


def select_output(raw: Any, output: OutputSelector) -> Any:
    """The output of ``raw`` (what the model returned for a batch) that is certified.

    Without ``output`` a dict, a named tuple or a tuple of batches is refused
    (``SeveralOutputsError``) with the names to choose from: a tuple of two batches would
    otherwise read as two outputs. With it: ``output(raw)`` for a function, else the key or
    position ``output`` of ``raw``, or of each item of a list of per-input dicts or tuples (a
    detector's ``[{"boxes": ..., "scores": ...}, ...]``; stacked into a batch where they are
    tensors of one shape).
    """
    if callable(output):
        return output(raw)
    parts = _parts(raw)
    if output is None:
        if parts is None:
            return raw
        first = next(iter(parts))
        kind = "a dict" if isinstance(raw, Mapping) else "a tuple"
        raise SeveralOutputsError(
            f"the model returns {kind} of outputs, not a batch: {_choices(parts)}; choose the "
            f"one to certify with output={first!r} (on the command line --output {first})"
            + (", and certify another in a run of its own" if len(parts) > 1 else "")
        )
    if parts is not None:
        return _pick(parts, output)
    if isinstance(raw, list) and raw and all(_parts(item) is not None for item in raw):
        picked = [_pick(_parts(item) or {}, output, per_input=True) for item in raw]
        return _stacked(picked)
    raise SeveralOutputsError(
        f"output={output!r} picks one of several outputs, but the model returns one: "
        f"{_describe_part(raw)}; leave output out"
    )


class BaseFunction:
    """The user's model as a function from a noisy torch batch to a checked output batch.

    ``autocast`` ("bf16" / "fp16") runs the model under ``torch.autocast``; ``compile`` wraps it in
    ``torch.compile`` (``True`` for the default backend, or a backend name). Neither touches the
    guarantee: the certificate is about the function actually evaluated, which is then the
    low-precision or compiled model.

    An ``nn.Module`` runs in eval mode (dropout off, batch norm on its running statistics) while
    it is evaluated, and each of its modules gets back the ``training`` flag it had: around each
    call, or once around a whole computation inside ``evaluating()``.
    """

    def __init__(
        self,
        fn: Any,
        device: torch.device,
        autocast: str | None = None,
        compile: bool | str = False,
        output: OutputSelector = None,
    ) -> None:
        fn = model_function(fn)
        self.output = check_output_selector(output)
        if autocast is not None and autocast not in AUTOCAST_DTYPES:
            raise ValueError(
                f"autocast must be None or one of {sorted(AUTOCAST_DTYPES)}, got {autocast!r}"
            )
        self.input_dtype: torch.dtype | None = None  # the module's float type, fed to it
        self.noise_dtype: torch.dtype | None = None  # the type inputs and noise are added in
        self.module = fn if isinstance(fn, nn.Module) else None
        self._evaluating = 0  # depth of nested evaluating() blocks
        if isinstance(fn, nn.Module):
            fn.to(device)
            floats = [p.dtype for p in fn.parameters() if p.is_floating_point()]
            self.input_dtype = floats[0] if floats else None
            self.noise_dtype = self.input_dtype
            if self.input_dtype in HALF_DTYPES:
                # x + delta is formed in float32 and rounded after: the model is then a fixed
                # function of x + delta, as the Gaussian shift lemma needs. Rounding x and the
                # noise first would move x and quantise the noise.
                self.noise_dtype = torch.float32
        if compile:
            # dynamic shapes: the last batch of each stage (and of each number of inputs per
            # call) has another size, which would otherwise compile the model again
            backend = "inductor" if compile is True else str(compile)
            fn = torch.compile(fn, backend=backend, dynamic=True)
        self.fn: Callable[..., Any] = fn
        self.device = device
        self.autocast_dtype = None if autocast is None else AUTOCAST_DTYPES[autocast]

    @property
    def rounding_eps(self) -> float:
        """The rounding unit of the coarsest float type the model computes in: float32's, or a
        half-precision module's or autocast type's (its outputs carry that rounding even once
        converted to float32)."""
        half = [d for d in (self.autocast_dtype, self.input_dtype) if d in HALF_DTYPES]
        return max([FLOAT32_EPS, *(float(torch.finfo(d).eps) for d in half)])

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """The module in eval mode for the block; on leaving it, every module's ``training`` flag
        is the one it had on entering (a model partly in train mode comes back exactly so).

        Calls inside the block then skip the switch they would otherwise make each time; blocks
        nest (only the outermost switches). Nothing to do for a function that is no module.
        """
        modes: list[tuple[nn.Module, bool]] = []
        if self.module is not None and not self._evaluating:
            modes = [(module, module.training) for module in self.module.modules()]
            if any(training for _, training in modes):
                self.module.eval()
            else:
                modes = []  # already in eval mode: nothing to switch back
        self._evaluating += 1
        try:
            yield
        finally:
            self._evaluating -= 1
            for module, training in modes:  # the flags alone: train() would also set children
                module.training = training

    def __call__(
        self, batch: torch.Tensor, numpy_dtype: np.dtype | None = None, check_finite: bool = True
    ) -> Outputs:
        """Apply the model to ``batch`` (as a NumPy array of ``numpy_dtype`` for NumPy models).

        ``check_finite=False`` leaves the NaN check to the caller (see ``OutputMonitor``).
        """
        with self.evaluating(), torch.no_grad():
            if numpy_dtype is not None:
                arrays = batch.detach().cpu().numpy().astype(numpy_dtype, copy=False)
                raw = select_output(self.fn(arrays), self.output)
            else:
                raw = self.forward(batch)
        out = self._check(raw, batch.shape[0])
        if isinstance(out, torch.Tensor) and out.dtype in (torch.float16, torch.bfloat16):
            out = out.float()
        if check_finite:
            OutputMonitor(self.device).outputs(out).raise_if_bad()
        return out

    def forward(self, batch: torch.Tensor) -> Any:
        """The model on a torch batch as certified: cast to a half-precision module's type and
        under the autocast asked for, with gradients if the caller enables them (the attack
        differentiates this very function); the chosen output, unchecked."""
        if self.input_dtype in HALF_DTYPES:
            batch = batch.to(self.input_dtype)
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.bfloat16,
            enabled=self.autocast_dtype is not None,
        ):
            return select_output(self.fn(batch), self.output)

    def _check(self, raw: Any, expected: int) -> Outputs:
        if isinstance(raw, np.ndarray) and raw.dtype != object:
            raw = torch.from_numpy(np.ascontiguousarray(raw))
        if isinstance(raw, torch.Tensor):
            if raw.dim() == 0 or raw.shape[0] != expected:
                got = "a scalar" if raw.dim() == 0 else f"a batch of {raw.shape[0]}"
                raise ValueError(
                    f"base function returned {got} for a batch of {expected} inputs; it must "
                    f"return one output per input (first dimension = batch)"
                )
            return raw.detach().to(self.device)
        if isinstance(raw, list | tuple | np.ndarray):
            items = list(raw)
            if len(items) != expected:
                raise ValueError(
                    f"base function returned {len(items)} outputs for a batch of {expected} inputs"
                )
            return items
        raise TypeError(
            "base function must return a tensor, a NumPy array or a list with one output per "
            f"input, got {type(raw).__name__}"
        )


FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


class OutputMonitor:
    """Flags for NaN / infinite outputs, outputs a distance is not defined on (probability
    vectors that are not, ``Metric.invalid_outputs``) and bad distances, kept on the device and
    read once.

    Reading a flag makes the host wait for the device, so the sampling loops record into these
    flags and check them after a whole stage instead of after every batch. ``rounding_eps`` is
    the rounding unit of the float type the model computes in (for the distances' checks).
    With ``nan_outputs="outside"`` an output holding a NaN or an infinity is no error: its
    distance to every point is ``inf`` (:meth:`distances`), so it lies outside every ball.
    """

    def __init__(
        self,
        device: torch.device,
        metrics: Sequence[Metric] = (),
        rounding_eps: float = FLOAT32_EPS,
        nan_outputs: str = "error",
    ) -> None:
        self.bad_outputs = torch.zeros((), dtype=torch.bool, device=device)
        self.bad_distances = torch.zeros((), dtype=torch.bool, device=device)
        self.negative = torch.zeros((), dtype=torch.bool, device=device)
        self.metrics = list(metrics)
        self.invalid = [torch.zeros((), dtype=torch.bool, device=device) for _ in self.metrics]
        self.rounding_eps = rounding_eps
        self.outside = nan_outputs == "outside"

    def outputs(self, out: Outputs) -> OutputMonitor:
        if not isinstance(out, torch.Tensor):
            return self
        finite = None
        if out.is_floating_point() or out.is_complex():
            if self.outside:
                finite = finite_rows(out)
            else:
                self.bad_outputs |= ~_all_finite(out).to(self.bad_outputs.device)
        for j, metric in enumerate(self.metrics):
            bad = metric.invalid_outputs(out, self.rounding_eps)
            if bad is not None:
                if finite is not None:
                    bad = bad & finite  # outside every ball anyway
                self.invalid[j] |= bad.any().to(self.invalid[j].device)
        return self

    def distances(self, d: torch.Tensor, outputs: Outputs = None) -> torch.Tensor:
        """Record ``d``'s flags and return it; with ``nan_outputs="outside"`` and the
        ``outputs`` it was measured to, ``inf`` where an output is not finite."""
        device = self.negative.device
        outside = self.outside and isinstance(outputs, torch.Tensor) and outputs.is_floating_point()
        kept = finite_rows(outputs).to(d.device) if outside else None
        checked = d if kept is None else torch.where(kept, d, 0.0)
        if checked.numel():
            low, high = torch.aminmax(checked)
            self.bad_distances |= ~(torch.isfinite(low) & torch.isfinite(high)).to(device)
            self.negative |= (low < 0).to(device)
        return d if kept is None else outside_distances(d, outputs, kept)

    def raise_if_bad(self) -> None:
        if bool(self.bad_outputs):
            raise ValueError(
                "base function returned NaN or infinite outputs (nan_outputs='outside', on "
                "the command line --nan-outputs outside, counts such an output as one outside "
                "every ball instead)"
            )
        for metric, flag in zip(self.metrics, self.invalid, strict=True):
            if bool(flag):
                raise ValueError(metric.invalid_message())
        if bool(self.bad_distances):
            raise ValueError("the metric returned NaN or infinite distances")
        if bool(self.negative):
            raise ValueError("the metric returned negative distances")


def finite_rows(out: torch.Tensor) -> torch.Tensor:
    """Per output of a batch, whether all its entries are finite (a bool tensor)."""
    if out.numel() == 0:
        return torch.ones(out.shape[0], dtype=torch.bool, device=out.device)
    return torch.isfinite(out.reshape(out.shape[0], -1)).all(dim=1)


def outside_distances(
    d: torch.Tensor, outputs: Outputs, kept: torch.Tensor | None = None
) -> torch.Tensor:
    """``d`` with ``inf`` where the output it was measured to holds a NaN or an infinity
    (``nan_outputs="outside"``: such an output is at infinite distance from every point);
    ``kept`` is ``finite_rows(outputs)`` when already known."""
    if not (isinstance(outputs, torch.Tensor) and outputs.is_floating_point()):
        return d
    kept = finite_rows(outputs).to(d.device) if kept is None else kept
    return torch.where(kept, d, math.inf)


def finite_outputs(samples: Outputs) -> Outputs:
    """The outputs of a batch whose entries are all finite (the outputs of other kinds: all)."""
    if isinstance(samples, torch.Tensor) and samples.is_floating_point():
        return samples[finite_rows(samples)]
    return samples


def _all_finite(t: torch.Tensor) -> torch.Tensor:
    """Whether every entry is finite, as a device scalar. For real tensors the extremes tell it
    (a NaN propagates through ``aminmax``, an infinity is an extreme): one reduction, about 20x
    cheaper than ``isfinite(t).all()``, which first writes a mask of the tensor's size."""
    if t.is_complex() or t.numel() == 0:
        return torch.isfinite(t).all()
    low, high = torch.aminmax(t)
    return torch.isfinite(low) & torch.isfinite(high)


def noisy_batch(
    x: torch.Tensor, sigma: float, size: int, generator: torch.Generator
) -> torch.Tensor:
    """``size`` draws of ``x + N(0, sigma^2 I)``, generated on ``x``'s device in its dtype."""
    noise = torch.randn((size, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    return torch.add(x, noise, alpha=sigma, out=noise)  # in place: no second batch-sized tensor


NOISE_BLOCK = 256  # samples per noise block on the CPU
CUDA_BLOCK_ELEMENTS = 2**22  # on a CUDA device a block holds about this many numbers


def noise_block(x: torch.Tensor) -> int:
    """Samples per noise block for inputs like ``x``: ``NOISE_BLOCK`` on the CPU; on a CUDA
    device the largest power of two (at least 16) with at most ``CUDA_BLOCK_ELEMENTS`` numbers,
    so that the device draws few, large blocks. It depends only on the device and the shape."""
    if x.device.type != "cuda":
        return NOISE_BLOCK
    per_block = max(1, CUDA_BLOCK_ELEMENTS // max(1, x.numel()))
    return max(16, 1 << (per_block.bit_length() - 1))


def _fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser: a bijection on 32-bit integers that mixes every bit."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


class NoiseStream:
    """Noisy copies ``x + sigma * z`` of one input (no clipping), drawn in fixed blocks.

    Block ``b`` (samples ``b * block`` to ``(b + 1) * block - 1``) is one ``torch.randn`` call
    from its own generator, seeded from (the input's seed, ``b``): ``fmix32(a + b * m)`` with
    ``a`` and odd ``m`` drawn from the seed by ``SeedSequence``, so the blocks of one input get
    distinct seeds (torch's CPU generator keeps 32 bits of a seed). The noise of the j-th sample
    therefore depends only on the seed and j: not on the batch size, on which inputs share a
    forward pass, on the number of threads, or on which process draws it; and the blocks can be
    drawn in parallel (see :func:`draw_noisy`). Its name in results files is
    ``results_file.NOISE_STREAM``.
    """

    def __init__(self, x: torch.Tensor, sigma: float, seed: int | None) -> None:
        self.x, self.sigma = x, sigma
        self.block = noise_block(x)
        entropy = None if seed is None else int(seed) % 2**64
        a, m = np.random.SeedSequence(entropy).generate_state(2, np.uint32).tolist()
        self.offset, self.stride = int(a), int(m) | 1
        self.next_block = 0
        self.buffer = x.new_empty((0, *x.shape))  # noisy samples drawn and not yet taken

    def block_seed(self, b: int) -> int:
        return _fmix32((self.offset + b * self.stride) & 0xFFFFFFFF)

    def draw_block(self, b: int, out: torch.Tensor) -> None:
        """The noisy samples ``x + sigma * z`` of block ``b`` into ``out`` (one block's shape):
        ``z`` standard normal, then a multiplication and an addition, each correctly rounded, so
        the bits do not depend on how torch splits the work."""
        gen = torch.Generator(device=out.device)
        gen.manual_seed(self.block_seed(b))
        torch.randn(out.shape, generator=gen, device=out.device, dtype=out.dtype, out=out)
        out.mul_(self.sigma).add_(self.x)

    def fill(self, target: torch.Tensor) -> list[Callable[[], None]]:
        """Jobs that write the next ``len(target)`` noisy samples into ``target``: the samples
        left from the last block are copied now, whole blocks are drawn straight into
        ``target``, and a last block partly needed is drawn into a buffer whose rest waits for
        the next call. So a batch holds its own samples and at most one block besides (a
        concatenation would hold them twice)."""
        size = target.shape[0]
        used = min(size, self.buffer.shape[0])
        if used:
            target[:used] = self.buffer[:used]
        self.buffer = _rest(self.buffer, used)
        jobs: list[Callable[[], None]] = []
        at = used
        while at < size:
            b, self.next_block = self.next_block, self.next_block + 1
            if size - at >= self.block:
                jobs.append(functools.partial(self.draw_block, b, target[at : at + self.block]))
                at += self.block
                continue
            block = self.x.new_empty((self.block, *self.x.shape))
            jobs.append(functools.partial(self._draw_head, b, block, target[at:]))
            self.buffer = block[size - at :]
            at = size
        return jobs

    def _draw_head(self, b: int, block: torch.Tensor, head: torch.Tensor) -> None:
        self.draw_block(b, block)
        head.copy_(block[: head.shape[0]])

    def take(self, size: int) -> torch.Tensor:
        """The next ``size`` noisy samples."""
        return draw_noisy([self], size)


def _run(jobs: list[Callable[[], None]], threads: int) -> None:
    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            job()
        return
    global _POOL
    if _POOL is None or _POOL[0] != (os.getpid(), threads):  # a forked worker makes its own
        _POOL = ((os.getpid(), threads), ThreadPoolExecutor(threads, "centersmooth-noise"))
    for future in [_POOL[1].submit(job) for job in jobs]:
        future.result()


_POOL: tuple[tuple[int, int], ThreadPoolExecutor] | None = None


def draw_noisy(streams: list[Any], size: int) -> torch.Tensor:
    """The next ``size`` noisy samples of every stream, concatenated in stream order.

    On the CPU the needed blocks of all the streams are drawn in parallel, on as many threads as
    torch uses (``torch.get_num_threads()``; ``torch.randn`` releases the GIL); each block is the
    same whichever thread draws it. ``x + sigma * z`` is then formed as two correctly rounded
    operations (multiply, then add), which give the same bits however the work is split.
    Streams other than :class:`NoiseStream` (``GridNoiseStream``) are taken one by one.
    """
    if not all(isinstance(stream, NoiseStream) for stream in streams):
        parts = [stream.take(size) for stream in streams]
        return parts[0] if len(parts) == 1 else torch.cat(parts)
    x = streams[0].x  # inputs of one call share shape, type and device
    out = x.new_empty((len(streams) * size, *x.shape))
    jobs: list[Callable[[], None]] = []
    for i, stream in enumerate(streams):
        jobs += stream.fill(out[i * size : (i + 1) * size])
    _run(jobs, torch.get_num_threads() if x.device.type == "cpu" else 1)
    return out


def _rest(buffer: torch.Tensor, taken: int) -> torch.Tensor:
    """What is left of ``buffer`` after its first ``taken`` samples; a fresh empty tensor when
    nothing is (an empty view would keep the whole block's memory alive until the next draw,
    so that two batches would be held at once)."""
    rest = buffer[taken:]
    return rest if rest.shape[0] else buffer.new_empty((0, *buffer.shape[1:]))


# ----------------------------------------------------------------------------- inputs of one call
def prepare_input(
    x: Any, base_function: BaseFunction, device: torch.device, input_grid: float | None = None
) -> tuple[torch.Tensor, Any]:
    """One input as a float tensor on the device, and the NumPy dtype for NumPy models.

    With ``input_grid`` the input is snapped to ``k * input_grid``, as the noisy inputs are."""
    np_dtype = None
    if isinstance(x, np.ndarray):
        np_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
        xt = torch.from_numpy(np.asarray(x, dtype=np_dtype))
    elif isinstance(x, torch.Tensor):
        xt = x.detach()
    else:
        raise TypeError(
            f"x must be a torch.Tensor or a NumPy array (one input, no batch dimension), "
            f"got {type(x).__name__}"
        )
    if base_function.noise_dtype is not None and np_dtype is None:
        xt = xt.to(base_function.noise_dtype)
    elif not xt.is_floating_point():
        xt = xt.to(torch.get_default_dtype())
    if xt.dim() == 0:
        raise ValueError("x must have at least one dimension (one input, no batch dimension)")
    if not bool(torch.isfinite(xt).all()):
        raise ValueError("x contains NaN or infinite values")
    if input_grid is not None:
        k = grid_noise.snap_to_grid(xt, input_grid)
        xt = grid_noise.lattice_to_float(k, input_grid, xt.dtype)
    return xt.to(device), np_dtype


@dataclass
class PreparedInputs:
    """Inputs of one call, prepared for the device, each with its own noise generator."""

    xs: list[torch.Tensor]
    np_dtype: Any
    streams: list[Any]  # NoiseStream, or GridNoiseStream with input_grid

    def returned(self, point: Any) -> Any:
        """A center in the type the model returned: a NumPy model's tensor outputs (converted
        for the distances) go back as a NumPy array; a set-valued center is always a
        ``frozenset``, whether it is one of the model's sets or the majority set."""
        if self.np_dtype is not None and isinstance(point, torch.Tensor):
            return point.cpu().numpy()
        if isinstance(point, AbstractSet) and not isinstance(point, frozenset):
            return frozenset(point)
        return point

    def subset(self, indices: Sequence[int]) -> PreparedInputs:
        """The inputs at ``indices``, each with its own noise stream (which goes on from where it
        stands: a stream's samples do not depend on which inputs share a forward pass)."""
        return PreparedInputs(
            [self.xs[i] for i in indices], self.np_dtype, [self.streams[i] for i in indices]
        )

    @classmethod
    def build(
        cls,
        xs: Sequence[Any],
        seeds: Sequence[int] | None,
        base_seed: int | None,
        sigma: float,
        base_function: BaseFunction,
        device: torch.device,
        input_grid: float | None = None,
    ) -> PreparedInputs:
        """Seeds: ``seeds[i]`` if given, else ``base_seed + i`` (:func:`seed_at`; so
        ``certify(x)`` equals ``certify_batch([x])`` and ``certify(x, seed=base_seed)``), else
        fresh noise."""
        if len(xs) == 0:
            raise ValueError("xs must hold at least one input")
        prepared = [prepare_input(x, base_function, device, input_grid) for x in xs]
        tensors = [t for t, _ in prepared]
        if len({t.shape for t in tensors}) > 1 or len({str(d) for _, d in prepared}) > 1:
            raise ValueError("inputs certified together must share one shape and one type")
        if seeds is not None and len(seeds) != len(xs):
            raise ValueError(f"got {len(seeds)} seeds for {len(xs)} inputs")
        if seeds is None and base_seed is not None:
            seeds = [seed_at(base_seed, i) for i in range(len(xs))]
        streams: list[Any] = []
        for x, seed in zip(tensors, [None] * len(xs) if seeds is None else seeds, strict=True):
            if input_grid is None:
                streams.append(NoiseStream(x, sigma, seed))
            else:
                k = grid_noise.snap_to_grid(x, input_grid)
                streams.append(
                    # blocks as large as the standard noise's (the same integers whatever
                    # the block: the generator's words are used in order)
                    grid_noise.GridNoiseStream(k, input_grid, sigma, x.dtype, seed, noise_block(x))
                )
        return cls(tensors, prepared[0][1], streams)


def noisy_outputs(
    base_function: BaseFunction,
    inputs: PreparedInputs,
    n: int,
    batch_size: int,
    monitor: OutputMonitor,
    stage: str = "",
    progress: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[list[Outputs]]:
    """``n`` noisy outputs per input, yielded as per-input slices of shared forward passes.

    Outputs and distances are validated once per stage from flags kept on the device, so the
    loop does not wait on the host after each batch. ``on_batch`` is called with the number of
    forward passes of each batch (all inputs together), once the batch is used.
    """
    per_input = max(1, batch_size // len(inputs.xs))
    bar = tqdm(total=math.ceil(n / per_input), desc=stage, disable=not progress, leave=False)
    done = 0
    while done < n:
        size = min(per_input, n - done)
        noisy = draw_noisy(inputs.streams, size)
        out = base_function(noisy, inputs.np_dtype, check_finite=False)
        del noisy  # not held while the next batch is drawn (``batch_size`` plans for one)
        monitor.outputs(out)
        yield [out[i * size : (i + 1) * size] for i in range(len(inputs.xs))]
        done += size
        bar.update()
        if on_batch is not None:
            on_batch(size * len(inputs.xs))
    bar.close()
    monitor.raise_if_bad()


CHUNK_ELEMENTS = 2**22  # numbers in one chunk of outputs handed to a distance (16 MB in float32)
MAX_CHUNK_ROWS = 256


def chunk_rows(out: Outputs) -> int:
    """Outputs per chunk for outputs like ``out``: as many as hold ``CHUNK_ELEMENTS`` numbers,
    between 2 and ``MAX_CHUNK_ROWS``. It depends only on the size of one output, never on the
    batch."""
    if not isinstance(out, torch.Tensor) or out.shape[0] == 0:
        return MAX_CHUNK_ROWS
    per_row = max(1, out[0].numel())
    return max(2, min(MAX_CHUNK_ROWS, CHUNK_ELEMENTS // per_row))


def in_fixed_chunks(stream: Iterator[list[Outputs]]) -> Iterator[list[Outputs]]:
    """The per-input output slices of ``stream`` cut again into chunks of ``chunk_rows`` outputs
    at fixed sample positions (samples 0 to R - 1, R to 2R - 1, ...; the last chunk holds what
    is left).

    A distance computed on a batch of outputs may round each row differently with the batch's
    size (torch splits a long row over threads when the batch has one row; a GPU lays out a
    reduction by the number of rows; a network such as LPIPS picks kernels by batch). Handed
    chunks of one size at the same positions, whatever the forward batches were, every distance
    has the same bits for any ``batch_size`` and any grouping of inputs. Chunks are views where
    they lie within one forward batch; the outputs a batch leaves over (fewer than a chunk per
    input) are copied and held until the next one, so no batch outlives its turn.
    """
    pending: list[list[Outputs]] | None = None  # per input: the slices not yet handed out
    held = 0  # outputs per input in ``pending``
    rows = MAX_CHUNK_ROWS
    for outputs in stream:
        if pending is None:
            pending = [[] for _ in outputs]
            rows = chunk_rows(outputs[0])
        size = len(outputs[0])
        start = 0
        if held:  # complete the chunk begun in earlier batches
            take = min(rows - held, size)
            for parts, out in zip(pending, outputs, strict=True):
                parts.append(out[:take])
            held, start = held + take, take
            if held < rows:
                continue
            yield [_joined(parts) for parts in pending]
            pending, held = [[] for _ in outputs], 0
        while size - start >= rows:
            yield [out[start : start + rows] for out in outputs]
            start += rows
        if start < size:  # a copy, so that the batch it comes from can be freed
            for parts, out in zip(pending, outputs, strict=True):
                rest = out[start:]
                parts.append(rest.clone() if isinstance(rest, torch.Tensor) else rest)
            held = size - start
    if pending is not None and held:
        yield [_joined(parts) for parts in pending]


def _joined(parts: list[Outputs]) -> Outputs:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return [item for part in parts for item in part]


class SampleCollector:
    """The center samples of one input, gathered batch by batch into one preallocated tensor (or
    a list for Python-object outputs), so they are never held twice."""

    def __init__(self, n: int) -> None:
        self.n, self.filled = n, 0
        self.store: Any = None

    def add(self, out: Outputs) -> None:
        if not isinstance(out, torch.Tensor):
            self.store = self.store if self.store is not None else []
            self.store.extend(out)
            return
        if self.store is None:
            self.store = out.new_empty((self.n, *out.shape[1:]))
        self.store[self.filled : self.filled + out.shape[0]] = out
        self.filled += out.shape[0]

    def take(self) -> Outputs:
        store, self.store = self.store, None
        return store
