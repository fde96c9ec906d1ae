"""A model with several outputs (a detector's box and score): certify each with its own distance.

Run: ``python examples/several_outputs.py``. A model that returns a dict, a tuple or a named tuple
of batches (or a list of per-input dicts) is refused until ``output=`` names the output to certify;
each output is certified in a run of its own, with the distance that suits it. On the command
line: ``centersmooth certify --model detector.py:make --output boxes --metric jaccard ...``.
"""

import torch

from centersmooth import CenterSmoothing
from centersmooth.sampling import SeveralOutputsError

torch.manual_seed(0)
weights = torch.randn(5, 64) / 8


def detector(batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """A stand-in detector on 8x8 images: one box (x1, y1, x2, y2) per image and its score."""
    z = batch.flatten(1) @ weights.T
    corner = torch.sigmoid(z[:, :2]) * 4
    size = 2 + 2 * torch.sigmoid(z[:, 2:4])
    return {"boxes": torch.cat([corner, corner + size], dim=1), "scores": torch.sigmoid(z[:, 4:])}


image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1))
try:
    CenterSmoothing(detector, metric="jaccard").certify(image, 0.25)
except SeveralOutputsError as err:
    print(f"without output=: {err}\n")

counts = {
    "n_center": 2_000,
    "n_check": 2_000,
    "n_certify": 20_000,
}  # quick; the defaults are tighter
for output, metric in (("boxes", "jaccard"), ("scores", "l2")):
    smoother = CenterSmoothing(detector, metric=metric, output=output, sigma=0.25, seed=0, **counts)
    cert = smoother.certify(image, eps_in=[0.1, 0.25])
    if cert.abstained:
        print(f"{output} under {metric}: abstained ({cert.abstain_reason})")
        continue
    print(f"{output} under {metric}: center {cert.center.tolist()}")
    for eps_in, eps_out in zip(cert.eps_in, cert.eps_out, strict=True):
        print(f"  eps_in={eps_in:.2f} -> eps_out={eps_out:.4f}")
