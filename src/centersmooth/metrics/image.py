"""Total variation of the difference image (the paper's TV1 and TV2 distances).

``TV_p(e) = sum over pixels of || (dx e, dy e) ||_p``, the p-norm taken over the channels of the
horizontal and vertical forward differences at each pixel (zero past the last row / column).
``d(a, b) = TV_p(a - b)`` is a seminorm of the difference, hence a pseudo-metric (``gamma = 1``).
Outputs are images ``(H, W)`` or ``(C, H, W)``.
"""

from __future__ import annotations

import torch

from .base import PAIRWISE_BUDGET, TENSORS, Metric, flat, float_pair
from .vector import vector_centers

EXACT_DIFFERENCES = "donot_use_mm_for_euclid_dist"  # torch.cdist without the product form


def image_gradients(images: torch.Tensor) -> torch.Tensor:
    """Forward differences of a batch ``(n, [C,] H, W)`` as ``(n, 2C, H, W)``, zero past the
    last row / column."""
    x = _channels_first(images)
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return torch.cat([dx, dy], dim=1)


class TotalVariationDistance(Metric):
    """``TV_p(a - b)`` for p = 1 (anisotropic) or p = 2 (isotropic).

    Unbounded (a seminorm of the difference image), so :meth:`diameter` is ``None``: these are
    not the total variation distance between distributions (``total_variation``).
    """

    central_key = "vector"  # the same central points as l2 (``vector_centers``)
    takes = (TENSORS,)

    def __init__(self, p: int, name: str) -> None:
        self.p = p
        self.name = name

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # integer outputs: no wrap-around in the difference
        fa, fb = float_pair(self.accept(a), self.accept(b))
        return self._total_variation(_channels_first(fa - fb))

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = self.accept(a), self.accept(b)
        if self.p == 1:
            # TV1(a - b) = ||grad a - grad b||_1 since the gradient is linear.
            ga, gb = float_pair(image_gradients(a), image_gradients(b))
            return torch.cdist(flat(ga), flat(gb), p=1)
        # TV2 of a difference from the difference of the gradients (linear): at each pixel the
        # Euclidean distance between the (dx, dy) x channel vectors of the two images, computed
        # by torch.cdist batched over pixels, with exact differences (no product form), then
        # summed over pixels. Blocks of rows keep the (pixels, rows, samples) distances within
        # PAIRWISE_BUDGET; no Python loop runs over single rows.
        left, right = float_pair(image_gradients(a), image_gradients(b))
        n, components, height, width = right.shape
        pixels = height * width
        out = right.new_empty(left.shape[0], n)
        if n == 0 or left.shape[0] == 0:
            return out
        per_pixel_right = right.reshape(n, components, pixels).permute(2, 0, 1).contiguous()
        per_pixel_left = left.reshape(left.shape[0], components, pixels).permute(2, 0, 1)
        rows = max(1, PAIRWISE_BUDGET // (pixels * n))
        for start in range(0, left.shape[0], rows):
            block = per_pixel_left[:, start : start + rows].contiguous()
            d = torch.cdist(block, per_pixel_right, compute_mode=EXACT_DIFFERENCES)
            out[start : start + rows] = d.sum(dim=0)
        return out

    def _total_variation(self, e: torch.Tensor) -> torch.Tensor:
        """``TV_p`` of a batch ``(n, C, H, W)``, without materialising the zero padding."""
        dx = e[..., :, 1:] - e[..., :, :-1]  # (n, C, H, W - 1)
        dy = e[..., 1:, :] - e[..., :-1, :]  # (n, C, H - 1, W)
        if self.p == 1:
            return dx.abs().sum(dim=(1, 2, 3)) + dy.abs().sum(dim=(1, 2, 3))
        sx, sy = dx.square().sum(dim=1), dy.square().sum(dim=1)
        inner = (sx[:, :-1, :] + sy[:, :, :-1]).sqrt().sum(dim=(1, 2))
        return inner + sx[:, -1, :].sqrt().sum(dim=1) + sy[:, :, -1].sqrt().sum(dim=1)

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor:
        return vector_centers(self.accept(samples))


def _channels_first(images: torch.Tensor) -> torch.Tensor:
    """A float batch ``(n, C, H, W)`` from ``(n, [C,] H, W)``."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise ValueError(
            f"total-variation distances take images (H, W) or (C, H, W); got outputs of shape "
            f"{tuple(images.shape[1:])}"
        )
    return images if images.is_floating_point() else images.to(torch.get_default_dtype())
