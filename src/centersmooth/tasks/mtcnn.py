"""MTCNN, the face detector of the paper's face experiment, in torch and batched over images.

Zhang, Zhang, Li and Qiao, "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks" (IEEE Signal Processing Letters, 2016): three small networks in cascade.

1. P-net slides a 12x12 window (stride 2) over each level of an image pyramid (scales
   ``12 / min_face_size * factor^k`` while the shorter side stays >= 12 pixels) and proposes a box
   wherever its face probability is at least ``thresholds[0]``. The proposals are thinned by
   non-maximum suppression (NMS) within each level (IoU 0.5), then across levels (IoU 0.7),
   moved by P-net's box regression and made square.
2. R-net scores a 24x24 crop of each proposal; those above ``thresholds[1]`` are thinned by NMS
   (IoU 0.7), moved by R-net's regression and made square.
3. O-net scores a 48x48 crop of each; those above ``thresholds[2]`` are moved by O-net's
   regression, and the most confident is the detection. (MTCNN's last NMS is skipped: it never
   removes the most confident box.)

The weights are those that ship in the ``facenet-pytorch==2.6.0`` wheel, checked against pinned
hashes (:func:`centersmooth.data.weights.mtcnn_state`); the paper ran that package's MTCNN. The
constants are the original's: thresholds 0.6 / 0.7 / 0.7, pyramid factor 0.709, smallest face 20
pixels. The details between the networks follow facenet-pytorch, so that the boxes are the ones the
paper certified: pyramid levels of ``int(side * scale + 1)`` pixels, resampled by area averaging;
boxes in the original's 1-based pixel indices, truncated to integers to crop; a crop keeps only
the part of a box inside the image (the original release pads with zeros instead), area-resampled
to the network's size; NMS with areas ``(x2 - x1) (y2 - y1)`` (the original adds 1 to each side).

Batched: the images of one call share a size and go through each stage together (the P-net on each
pyramid level; the R- and O-net on the crops of every image's candidates, in chunks), and NMS runs
per image, vectorised over the images. An image's box does not depend on the rest of its batch, up
to float rounding in the convolutions (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..data.weights import mtcnn_state
from ..metrics.boxes import box_iou

THRESHOLDS = (0.6, 0.7, 0.7)  # the face probability each stage keeps
SCALE_FACTOR = 0.709  # between pyramid levels (area ratio about 1/2)
MIN_FACE_SIZE = 20.0  # pixels: the smallest face searched (the largest pyramid scale is 12 / it)
NMS_WITHIN_LEVEL, NMS_ACROSS_LEVELS, NMS_REFINED = 0.5, 0.7, 0.7
CELL, STRIDE = 12, 2  # P-net's window and step, in pixels of a pyramid level
CROP_BATCH = 512  # crops per R- or O-net call: bounds the activations' memory
NMS_BLOCK = 1 << 22  # overlap-matrix entries per block of images in NMS


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """Pixel values 0..255 -> the networks' input range, (p - 127.5) / 128, channels-last (the
    layout the weights are stored in: about twice as fast on a CPU)."""
    return ((pixels - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def _flatten_transposed(x: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) -> (n, W * H * C): the order of the converted weights' dense layers."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class _Cascade(nn.Module):
    """A stack of convolutions, each followed by a PReLU (named ``conv{i}``, ``prelu{i}`` as in the
    converted weights) and, where its spec says, a max-pooling ``(kernel, stride)`` with ceil
    mode."""

    def __init__(self, convs: Sequence[tuple[int, int, int, tuple[int, int] | None]]) -> None:
        super().__init__()
        self.pools = []
        for i, (c_in, c_out, kernel, pool) in enumerate(convs, 1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c_out, kernel))
            setattr(self, f"prelu{i}", nn.PReLU(c_out))
            self.pools.append(pool)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for i, pool in enumerate(self.pools, 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            if pool is not None:
                x = F.max_pool2d(x, pool[0], pool[1], ceil_mode=True)
        return x


class PNet(_Cascade):
    """Fully convolutional proposal network: face probability and box offsets of every 12x12
    window, as maps over the window positions."""

    def __init__(self) -> None:
        super().__init__([(3, 10, 3, (2, 2)), (10, 16, 3, None), (16, 32, 3, None)])
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # not-face / face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # corner offsets, in window sizes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.trunk(x)
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(_Cascade):
    """Refinement network: a 24x24 crop -> face probability and corner offsets."""

    def __init__(self) -> None:
        super().__init__([(3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None)])
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu4(self.dense4(_flatten_transposed(self.trunk(x))))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(_Cascade):
    """Output network: a 48x48 crop -> face probability and corner offsets (its five landmarks,
    ``dense6_3``, come with the weights but are not computed)."""

    def __init__(self) -> None:
        convs = [(3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)), (64, 128, 2, None)]
        super().__init__(convs)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu5(self.dense5(_flatten_transposed(self.trunk(x))))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x)


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """The P-net scales: ``12 / min_face_size`` times the powers of ``factor`` while the shorter
    side of the scaled image is at least 12 pixels."""
    scale = CELL / min_face_size
    shorter = min(height, width) * scale
    scales = []
    while shorter >= CELL:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def _by_group(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The order that sorts by group, then by decreasing score (ties in input order)."""
    order = torch.argsort(scores, descending=True, stable=True)
    return order[torch.argsort(groups[order], stable=True)]


def most_confident(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The index of the highest score of each group present (of equal ones, the first)."""
    order = _by_group(scores, groups)
    g = groups[order]
    first = torch.ones_like(g, dtype=torch.bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Greedy non-maximum suppression within each group (image): the indices of the boxes kept.

    In each group, from the most confident box down, a box is kept unless a kept box overlaps it
    by IoU above ``threshold``. Vectorised over the groups: the loop runs over the ranks within
    a group, on blocks of groups whose overlap matrices hold ``NMS_BLOCK`` entries.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = _by_group(scores, groups)
    _, group, counts = torch.unique_consecutive(
        groups[order], return_inverse=True, return_counts=True
    )
    rank = torch.arange(order.numel(), device=boxes.device) - (counts.cumsum(0) - counts)[group]
    n_groups, k = counts.numel(), int(counts.max())
    padded = boxes.new_zeros(n_groups, k, 4)
    padded[group, rank] = boxes[order]
    valid = torch.zeros(n_groups, k, dtype=torch.bool, device=boxes.device)
    valid[group, rank] = True
    later = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)
    kept = torch.zeros_like(valid)
    step = max(1, NMS_BLOCK // (k * k))
    for lo in range(0, n_groups, step):
        b, removed = padded[lo : lo + step], ~valid[lo : lo + step]
        suppresses = (box_iou(b[:, :, None], b[:, None, :]) > threshold) & later
        for i in range(k):  # box i, where still there, removes the later boxes it overlaps
            removed |= suppresses[:, i] & ~removed[:, i : i + 1]
        kept[lo : lo + step] = ~removed
    return order[kept[group, rank]]


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Each box widened to the square of its longer side, about the same centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + (w - side) / 2
    y1 = boxes[:, 1] + (h - side) / 2
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _regress(boxes: torch.Tensor, offsets: torch.Tensor, extra: float) -> torch.Tensor:
    """Each corner moved by its offset times the box's width or height plus ``extra`` (1 after
    the R- and O-net, whose offsets count the pixels of inclusive boxes; 0 after the P-net)."""
    size = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1) + extra
    return boxes + offsets * size.repeat(1, 2)


def _summed_area(pixels: torch.Tensor) -> torch.Tensor:
    """Summed-area tables ``(n, H + 1, W + 1, C)`` of integer pixel values 0..255: float32 while
    every sum is an integer below 2^24 (so exact, and the fastest), float64 beyond."""
    n, c, h, w = pixels.shape
    dtype = torch.float32 if 255 * h * w < 2**24 else torch.float64
    table = pixels.new_zeros((n, h + 1, w + 1, c), dtype=dtype)
    table[:, 1:, 1:] = pixels.permute(0, 2, 3, 1).to(dtype).cumsum(1).cumsum(2)
    return table


def _bins(lo: torch.Tensor, hi: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-resampling of ``[lo, hi)`` to ``size`` values: bin ``i`` covers ``[lo + floor(i L /
    size), lo + ceil((i + 1) L / size))`` with ``L = hi - lo``, as ``adaptive_avg_pool``."""
    i = torch.arange(size, device=lo.device)
    length = (hi - lo)[:, None]
    start = lo[:, None] + torch.div(i * length, size, rounding_mode="floor")
    end = lo[:, None] + torch.div((i + 1) * length + size - 1, size, rounding_mode="floor")
    return start, end


def crop_resize(
    table: torch.Tensor, crops: torch.Tensor, groups: torch.Tensor, size: int
) -> torch.Tensor:
    """Pixel regions ``[x0, x1) x [y0, y1)`` (``crops``: ``(B, 4)`` integers inside the image,
    not empty) of the images ``groups``, area-resampled to ``(B, C, size, size)`` from their
    summed-area ``table`` (:func:`_summed_area`): the same values as
    ``F.interpolate(image[:, y0:y1, x0:x1], (size, size), mode="area")``, all crops at once."""
    n, h1, w1, c = table.shape
    x_start, x_end = _bins(crops[:, 0], crops[:, 2], size)
    y_start, y_end = _bins(crops[:, 1], crops[:, 3], size)
    area = (y_end - y_start)[:, :, None] * (x_end - x_start)[:, None, :]
    flat = table.reshape(n * h1 * w1, c)
    base = (groups * (h1 * w1))[:, None, None]

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flat[base + y[:, :, None] * w1 + x[:, None, :]]

    sums = at(y_end, x_end) - at(y_start, x_end) - at(y_end, x_start) + at(y_start, x_start)
    return (sums / area[..., None]).permute(0, 3, 1, 2).float()


class MTCNN(nn.Module):
    """Images ``(n, C, H, W)`` with values in ``[0, 1]`` (C = 1 is repeated to RGB) -> the most
    confident face box of each, ``(n, 4)`` float32 ``(x1, y1, x2, y2)`` in pixel edges (pixel
    ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``) clipped to the image, or the empty box
    ``(0, 0, 0, 0)`` where no face is found. Each image is clipped to ``[0, 1]`` and quantised to
    8 bits first, as a camera stores it (part of the function that is certified).

    Runs on the device of its weights (``.to(device)``; a smoother moves it to its own).
    ``weights``: a folder holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt`` (default: the copies
    the set-up unpacks into the cache); checked against the pinned hashes either way.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        min_face_size: float = MIN_FACE_SIZE,
        thresholds: Sequence[float] = THRESHOLDS,
        factor: float = SCALE_FACTOR,
    ) -> None:
        super().__init__()
        if not min_face_size >= CELL:
            raise ValueError(f"min_face_size must be at least {CELL} pixels, got {min_face_size!r}")
        if len(thresholds) != 3 or not all(0.0 <= t < 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three numbers in [0, 1), got {thresholds!r}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must lie in (0, 1), got {factor!r}")
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.pnet.load_state_dict(mtcnn_state("pnet", weights))
        self.rnet.load_state_dict(mtcnn_state("rnet", weights))
        self.onet.load_state_dict(mtcnn_state("onet", weights))
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detect(images)[0]

    @torch.no_grad()
    def detect(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The boxes (as the module's call) and their face probabilities (0 for no face)."""
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be (n, C, H, W) with C = 1 or 3; got {images.shape}")
        device = self.pnet.conv4_2.weight.device
        pixels = (images.detach().to(device, torch.float32).clamp(0, 1) * 255).round()
        pixels = pixels.expand(-1, 3, -1, -1)
        n, _, height, width = pixels.shape
        boxes = torch.zeros(n, 4, device=device)
        confidence = torch.zeros(n, device=device)
        found, groups = self._propose(pixels)
        if found.shape[0]:
            table = _summed_area(pixels)
            found, scores, offsets, groups = self._refine(self.rnet, 24, table, found, groups, 1)
            keep = nms(found, scores, groups, NMS_REFINED)
            found = _square(_regress(found[keep], offsets[keep], 1.0))
            found, scores, offsets, groups = self._refine(
                self.onet, 48, table, found, groups[keep], 2
            )
            found = _regress(found, offsets, 1.0)
            # 1-based inclusive pixel indices -> pixel edges, clipped to the image
            limits = found.new_tensor([width, height, width, height])
            edges = torch.minimum((found - found.new_tensor([1, 1, 0, 0])).clamp(min=0), limits)
            seen = torch.nonzero((edges[:, 2] > edges[:, 0]) & (edges[:, 3] > edges[:, 1]))[:, 0]
            best = seen[most_confident(scores[seen], groups[seen])]
            boxes[groups[best]] = edges[best]
            confidence[groups[best]] = scores[best]
        return boxes, confidence

    def _propose(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: the P-net on the pyramid -> square proposals ``(B, 4)`` and their images."""
        _, _, height, width = pixels.shape
        found = []
        for scale in pyramid_scales(height, width, self.min_face_size, self.factor):
            size = (int(height * scale + 1), int(width * scale + 1))
            prob, offsets = self.pnet(_normalise(F.interpolate(pixels, size=size, mode="area")))
            group, row, col = torch.nonzero(prob >= self.thresholds[0], as_tuple=True)
            cells = torch.stack([col, row], dim=1).double() * STRIDE
            boxes = torch.cat([(cells + 1) / scale, (cells + CELL) / scale], dim=1).floor().float()
            score = prob[group, row, col]
            keep = nms(boxes, score, group, NMS_WITHIN_LEVEL)
            found.append((boxes[keep], score[keep], offsets[group, :, row, col][keep], group[keep]))
        if not found:
            return pixels.new_zeros(0, 4), torch.zeros(0, dtype=torch.long, device=pixels.device)
        boxes, scores, offsets, groups = (torch.cat(parts) for parts in zip(*found, strict=True))
        keep = nms(boxes, scores, groups, NMS_ACROSS_LEVELS)
        return _square(_regress(boxes[keep], offsets[keep], 0.0)), groups[keep]

    def _refine(
        self,
        net: nn.Module,
        size: int,
        table: torch.Tensor,
        boxes: torch.Tensor,
        groups: torch.Tensor,
        stage: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The R- or O-net on ``size``-pixel crops of the boxes: the boxes whose probability
        exceeds the stage's threshold, with it, their offsets and their images. A box is cropped
        to its integer part inside the image; one with none of it there is dropped."""
        _, h1, w1, _ = table.shape
        corners = boxes.trunc().long()
        crops = torch.stack(
            [
                (corners[:, 0] - 1).clamp(min=0),
                (corners[:, 1] - 1).clamp(min=0),
                corners[:, 2].clamp(max=w1 - 1),
                corners[:, 3].clamp(max=h1 - 1),
            ],
            dim=1,
        )
        inside = (crops[:, 2] > crops[:, 0]) & (crops[:, 3] > crops[:, 1])
        boxes, crops, groups = boxes[inside], crops[inside], groups[inside]
        probs, offsets = [boxes.new_zeros(0)], [boxes.new_zeros(0, 4)]
        for lo in range(0, boxes.shape[0], CROP_BATCH):
            part = slice(lo, lo + CROP_BATCH)
            prob, offset = net(_normalise(crop_resize(table, crops[part], groups[part], size)))
            probs.append(prob)
            offsets.append(offset)
        prob, offset = torch.cat(probs), torch.cat(offsets)
        keep = prob > self.thresholds[stage]
        return boxes[keep], prob[keep], offset[keep], groups[keep]
