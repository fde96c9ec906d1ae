"""Jaccard distance between axis-aligned boxes ``(x1, y1, x2, y2)``: ``1 - IoU``; and between
Python sets when the outputs are lists of sets.

A box of zero area (``x2 <= x1`` or ``y2 <= y1``) is the empty set: "no box", for example no face
found. Two empty boxes are at distance 0 and an empty box is at distance 1 from any other box, so
the value is always defined. On boxes as sets of the plane this is the Jaccard distance, a metric
(a pseudo-metric on coordinates, since all empty boxes coincide).
"""

from __future__ import annotations

from typing import Any

import torch

from .base import SETS, TENSORS, Metric
from .sets import majority_set, set_jaccard, set_jaccard_pairwise

EMPTY_BOX = (0.0, 0.0, 0.0, 0.0)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Broadcasting intersection over union of boxes ``(..., 4)`` (at least float32); two empty
    boxes are the same set, IoU 1."""
    a = a.to(torch.promote_types(a.dtype, torch.float32))
    b = b.to(a.dtype)
    w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = w * h
    union = box_area(a) + box_area(b) - inter
    both_empty = union <= 0
    iou = inter / torch.where(both_empty, torch.ones_like(union), union)
    return torch.where(both_empty, torch.ones_like(iou), iou)


def _jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Broadcasting ``1 - IoU`` of boxes ``(..., 4)``."""
    return (1.0 - box_iou(a, b)).clamp(0.0, 1.0)


class BoxJaccardDistance(Metric):
    """``1 - |A & B| / |A | B|`` between boxes (a tensor batch of ``(x1, y1, x2, y2)``) or between
    Python sets (a list of sets or frozensets); two empty boxes or sets are at distance 0.
    A metric in both cases, with values in [0, 1]."""

    name = "jaccard"
    upper = 1.0
    takes = (TENSORS, SETS)

    def distance(self, a: Any, b: Any) -> torch.Tensor:
        a, b = self.accept_pair(a, b)
        if isinstance(a, list):
            return set_jaccard(a, b)
        _check_boxes(a)
        _check_boxes(b)
        return _jaccard(a.reshape(-1, 4), b.reshape(-1, 4))

    def pairwise(self, a: Any, b: Any) -> torch.Tensor:
        a, b = self.accept_pair(a, b)
        if isinstance(a, list):
            return set_jaccard_pairwise(a, b)
        _check_boxes(a)
        _check_boxes(b)
        return _jaccard(a.reshape(-1, 1, 4), b.reshape(1, -1, 4))

    def central_candidates(self, samples: Any) -> Any:
        samples = self.accept(samples)
        if isinstance(samples, list):
            return majority_set(samples)
        _check_boxes(samples)
        boxes = samples.reshape(-1, 4)
        boxes = boxes[box_area(boxes) > 0]
        if boxes.shape[0] == 0:
            return None
        work = boxes if boxes.is_floating_point() else boxes.double()
        centers = torch.stack([work.mean(dim=0), work.median(dim=0).values])
        return centers.to(samples.dtype if samples.is_floating_point() else work.dtype).reshape(
            2, *samples.shape[1:]
        )


def _check_boxes(boxes: torch.Tensor) -> None:
    if boxes.shape[-1] != 4 or boxes.reshape(boxes.shape[0], -1).shape[1] != 4:
        raise ValueError(
            f"the jaccard distance takes boxes (x1, y1, x2, y2); got outputs of shape "
            f"{tuple(boxes.shape[1:])}"
        )
