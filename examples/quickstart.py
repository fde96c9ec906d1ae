"""Certify a small linear model under the l2 distance (the README's quick-start)."""

import torch

from centersmooth import CenterSmoothing

torch.manual_seed(0)
weights = torch.randn(5, 10)


def model(batch: torch.Tensor) -> torch.Tensor:
    return batch @ weights.T


smoother = CenterSmoothing(model, metric="l2", sigma=0.25, seed=0)
x = torch.zeros(10)
cert = smoother.certify(x, eps_in=[0.1, 0.25, 0.5])
print(f"abstained: {cert.abstained}, smoothing error: {cert.smoothing_error:.4f}")
for eps_in, eps_out in zip(cert.eps_in, cert.eps_out, strict=True):
    print(f"eps_in={eps_in:.2f} -> eps_out={eps_out:.4f}")
print(f"largest certifiable eps_in: {cert.max_eps_in:.3f}")
norm = torch.linalg.matrix_norm(weights, 2)
print(f"spectral norm of the map (eps_out / eps_in can be no smaller): {norm:.3f}")
