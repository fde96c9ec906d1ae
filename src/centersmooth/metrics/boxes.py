"""Jaccard distance between axis-aligned boxes ``(x1, y1, x2, y2)``: ``1 - IoU``.

A box of zero area (``x2 <= x1`` or ``y2 <= y1``) is the empty set: "no box", for example no face
found. Two empty boxes are at distance 0 and an empty box is at distance 1 from any other box, so
the value is always defined. On boxes as sets of the plane this is the Jaccard distance, a metric
(a pseudo-metric on coordinates, since all empty boxes coincide).
"""

from __future__ import annotations

import torch

from .base import Metric

EMPTY_BOX = (0.0, 0.0, 0.0, 0.0)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(
        min=0
    )


def _jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Broadcasting ``1 - IoU`` of boxes ``(..., 4)``."""
    a = a.to(torch.promote_types(a.dtype, torch.float32))
    b = b.to(a.dtype)
    w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = w * h
    union = box_area(a) + box_area(b) - inter
    both_empty = union <= 0
    iou = inter / torch.where(both_empty, torch.ones_like(union), union)
    return torch.where(both_empty, torch.zeros_like(iou), 1.0 - iou).clamp(0.0, 1.0)


class BoxJaccardDistance(Metric):
    name = "jaccard"
    upper = 1.0

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check_boxes(a)
        _check_boxes(b)
        return _jaccard(a.reshape(-1, 4), b.reshape(-1, 4))

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check_boxes(a)
        _check_boxes(b)
        return _jaccard(a.reshape(-1, 1, 4), b.reshape(1, -1, 4))

    def central_candidates(self, samples: torch.Tensor) -> torch.Tensor | None:
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
