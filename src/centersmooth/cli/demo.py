"""``centersmooth demo``: a denoising autoencoder on the bundled 8x8 digits, certified end to end.

Trains the model (or reuses the cached one), certifies a few test digits at ``eps_in`` = 0.5, 1,
1.5 and 2 times ``sigma`` in l2 distance, prints a table, and writes two figures: the digits
(input, a noisy input, the base output, the smoothed output) and ``eps_out`` against ``eps_in``.
Sample counts 10^4 / 10^4 / 10^4 keep it under a minute on a small CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.datasets import load_dataset
from ..runs.tables import format_table
from ..smoothing import CenterSmoothing
from ..tasks import default_checkpoint, load_checkpoint, train

DEMO_EPOCHS = 40
DEMO_SAMPLES: dict[str, Any] = {"n_center": 10_000, "n_check": 10_000, "n_certify": 10_000}
EPS_IN_PER_SIGMA = (0.5, 1.0, 1.5, 2.0)


def run_demo(
    out_dir: Path,
    sigma: float = 0.25,
    n_digits: int = 4,
    retrain: bool = False,
    seed: int = 0,
    log: Any = print,
) -> dict[str, Any]:
    """Run the demo; returns the rows of the table and the paths of the files written."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits")
    ckpt = default_checkpoint("autoencoder", "digits", sigma, seed)
    if retrain or not ckpt.is_file():
        log(f"training a denoising autoencoder on digits (sigma_train {sigma:g}) ...")
        result = train(
            "autoencoder", "digits", sigma, epochs=DEMO_EPOCHS, seed=seed, out=ckpt, progress=True
        )
        log(f"  final loss {result.meta['final_loss']:.4f} -> {result.path}")
    else:
        log(f"using the cached model {ckpt}")
    model, meta = load_checkpoint(ckpt)

    smoother = CenterSmoothing(model, metric="l2", sigma=sigma, seed=seed, **DEMO_SAMPLES)
    eps_in = [h * sigma for h in EPS_IN_PER_SIGMA]
    indices = data.test_sample(n_digits, seed)
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict[str, Any]] = []
    panels = []
    for i in indices:
        x = torch.from_numpy(data.x_test[i])
        cert = smoother.certify(x, eps_in, seed=seed + int(i))
        with torch.no_grad():
            base = model(x.unsqueeze(0))[0]
        noisy = x + sigma * torch.randn(x.shape, generator=gen)
        eps_out = np.atleast_1d(np.asarray(cert.eps_out, dtype=float))
        for e, o in zip(eps_in, eps_out, strict=True):
            rows.append(
                {
                    "digit": int(i),
                    "label": int(data.y_test[i]),
                    "eps_in": e,
                    "eps_out": float(o),
                    "abstained": cert.abstained,
                    "smoothing_error": cert.smoothing_error,
                    "base_error": float((base - x).norm()),
                    "smoothed_error": None
                    if cert.abstained
                    else float((torch.as_tensor(cert.center) - x).norm()),
                }
            )
        center = None if cert.abstained else torch.as_tensor(cert.center)
        name = f"#{int(i)} (a {int(data.y_test[i])})"  # two test digits may show one numeral
        panels.append((name, x, noisy, base, center, eps_out))

    columns = (
        "digit",
        "label",
        "eps_in",
        "eps_out",
        "abstained",
        "smoothing_error",
        "base_error",
        "smoothed_error",
    )
    log(
        f"\ncenter smoothing, l2 distance, sigma {sigma:g}, samples "
        f"{DEMO_SAMPLES['n_center']}/{DEMO_SAMPLES['n_check']}/{DEMO_SAMPLES['n_certify']}, "
        "binomial bounds (errors are l2 distances to the clean digit)"
    )
    log(format_table(rows, columns))
    digits_png = out_dir / "demo_digits.png"
    curve_png = out_dir / "demo_eps_out.png"
    from ..runs.plotting import save

    save(digits_figure(panels, sigma), digits_png, dpi=120)
    save(curves_figure(panels, eps_in, sigma), curve_png, dpi=120)
    log(f"\nwrote {digits_png} and {curve_png} in {time.perf_counter() - start:.1f} s")
    return {"rows": rows, "figures": [digits_png, curve_png], "checkpoint": ckpt, "meta": meta}


def digits_figure(panels: list[Any], sigma: float) -> Any:
    """A row per test digit (input, a noisy input, base and smoothed outputs), named by its
    test index and numeral in the colour of its curve in ``curves_figure``."""
    from ..runs.plotting import pyplot

    plt = pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    titles = ("input x", f"x + N(0, {sigma:g}^2)", "base f(x)", "smoothed")
    fig, axes = plt.subplots(len(panels), 4, figsize=(6.8, 1.7 * len(panels)), squeeze=False)
    for r, (name, *images, _) in enumerate(panels):
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.axis("off")
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
            if image is None:
                ax.text(0.5, 0.5, "abstained", ha="center", va="center")
                continue
            ax.imshow(np.asarray(image).reshape(8, 8), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].text(
            -0.08, 0.5, name.replace(" ", "\n", 1), transform=axes[r, 0].transAxes,
            fontsize=9, ha="right", va="center", color=colors[r % len(colors)],
        )  # fmt: skip
    fig.tight_layout()
    return fig


def curves_figure(panels: list[Any], eps_in: list[float], sigma: float) -> Any:
    """Certified eps_out against eps_in, a curve per test digit (an abstention is named in the
    legend and draws no curve)."""
    from ..runs.plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for name, *images, eps_out in panels:
        abstained = images[-1] is None
        label = f"test digit {name}" + (": abstained" if abstained else "")
        ax.plot(eps_in, eps_out, marker="o", alpha=0.7, label=label)
    ax.set_xlabel("eps_in (l2 norm of the input perturbation)")
    ax.set_ylabel("certified eps_out (l2)")
    ax.set_title(f"digits autoencoder, sigma = {sigma:g}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
