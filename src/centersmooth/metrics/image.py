"""Total variation of the difference image (the paper's TV1 and TV2 distances).

``TV_p(e) = sum over pixels of || (dx e, dy e) ||_p``, the p-norm taken over the channels of the
horizontal and vertical forward differences at each pixel (zero past the last row / column).
``d(a, b) = TV_p(a - b)`` is a seminorm of the difference, hence a pseudo-metric (``gamma = 1``).
Outputs are images ``(H, W)`` or ``(C, H, W)``.
"""

from __future__ import annotations

import torch

from .base import TENSORS, Metric, float_pair
from .vector import vector_centers

PAIRWISE_ROWS = 64  # rows of a pairwise block
PAIRWISE_BLOCK = 2**18  # elements of a block's differences (rows x columns x features)


def image_gradients(images: torch.Tensor) -> torch.Tensor:
    """Forward differences of a batch ``(n, [C,] H, W)`` as ``(n, 2C, H, W)``, zero past the
    last row / column."""
    x = _channels_first(images)
    c = x.shape[1]
    gradients = x.new_zeros(x.shape[0], 2 * c, *x.shape[2:])  # written in place: no cat
    gradients[:, :c, :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    gradients[:, c:, :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return gradients


class TotalVariationDistance(Metric):
    """``TV_p(a - b)`` for p = 1 (anisotropic) or p = 2 (isotropic).

    Unbounded (a seminorm of the difference image), so :meth:`diameter` is ``None``: these are
    not the total variation distance between distributions (``total_variation``).
    """

    central_key = "vector"  # the same central points as l2 (``vector_centers``)
    takes = (TENSORS,)
    pair_default = True

    def __init__(self, p: int, name: str) -> None:
        self.p = p
        self.name = name

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # integer outputs: no wrap-around in the difference
        fa, fb = float_pair(self.accept(a), self.accept(b))
        return self._total_variation(_channels_first(fa - fb))

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # TV_p(a - b) from the difference of the gradients (the gradient is linear): per pixel
        # the p-norm over the (dx, dy) x channel components, summed over pixels. Blocks of up
        # to PAIRWISE_ROWS rows against as many columns as PAIRWISE_BLOCK elements allow keep
        # each column block in cache while every row of the block reads it (memory, not
        # arithmetic, bounds this form).
        left, right = float_pair(image_gradients(self.accept(a)), image_gradients(self.accept(b)))
        out = right.new_empty(left.shape[0], right.shape[0])
        if out.numel() == 0:
            return out
        # (n, components, pixels)
        left, right = left.flatten(start_dim=2), right.flatten(start_dim=2)
        features = left.shape[1] * left.shape[2]
        for start in range(0, left.shape[0], PAIRWISE_ROWS):
            rows = left[start : start + PAIRWISE_ROWS, None]
            step = max(1, PAIRWISE_BLOCK // (rows.shape[0] * features))
            for first in range(0, right.shape[0], step):
                diff = right[None, first : first + step] - rows
                if self.p == 1:
                    d = diff.abs_().sum(dim=(2, 3))
                else:
                    d = diff.square_().sum(dim=2).sqrt_().sum(dim=2)
                out[start : start + PAIRWISE_ROWS, first : first + step] = d
        return out

    def _total_variation(self, e: torch.Tensor) -> torch.Tensor:
        """``TV_p`` of a batch ``(n, C, H, W)``, without materialising the zero padding (the
        differences are new tensors, so they are overwritten in place: the same values, fewer
        passes over memory, which bounds this on large batches)."""
        dx = e[..., :, 1:] - e[..., :, :-1]  # (n, C, H, W - 1)
        dy = e[..., 1:, :] - e[..., :-1, :]  # (n, C, H - 1, W)
        if self.p == 1:
            return dx.abs_().sum(dim=(1, 2, 3)) + dy.abs_().sum(dim=(1, 2, 3))
        sx, sy = dx.square_().sum(dim=1), dy.square_().sum(dim=1)
        inner = (sx[:, :-1, :] + sy[:, :, :-1]).sqrt_().sum(dim=(1, 2))
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
