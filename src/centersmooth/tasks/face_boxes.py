"""Face detection certified in Jaccard distance: the paper's CelebA + MTCNN experiment, offline.

Base function: a deterministic face detector that returns the most confident face box
``(x1, y1, x2, y2)`` in pixels (floats), or the empty box ``EMPTY_BOX = (0, 0, 0, 0)`` when it
finds no face, so that the Jaccard distance (``1 - IoU``; an empty box is at distance 1 from any
face and 0 from another empty box) is always defined. Three detectors ship their models offline:

- ``"mtcnn"`` (the default, the paper's): MTCNN (:mod:`.mtcnn`) with the weights of
  ``facenet-pytorch`` 2.6.0; confidence = O-net's face probability. Batched, on the CPU or CUDA.
- ``"haar"``: OpenCV's Viola-Jones cascade ``haarcascade_frontalface_default.xml`` (from
  ``opencv-python-headless`` < 5); confidence = the cascade's level weight. CPU, one image at a
  time.
- ``"hog"``: dlib's HOG + linear SVM frontal face detector; confidence = the SVM score. CPU, one
  image at a time.

Units: images are float tensors ``(C, H, W)`` (C = 1 or 3) with pixel values in ``[0, 1]``. The
smoothing noise is added in these units, so ``sigma = 0.1`` is a tenth of the full pixel range per
pixel and channel, and ``eps_in`` is the l2 norm of a perturbation over all ``C * H * W`` values in
the same units. Every detector clips the noisy image to ``[0, 1]`` and quantises it to 8 bits (part
of the base function, so the certificate covers it).

Inputs (CelebA is not obtainable offline): scikit-image's ``astronaut`` photograph (a 256x256 crop
around the face, downsampled to 128x128), faces of its ``lfw_subset`` (25x25 Labeled Faces in the
Wild crops, upscaled to 100x100, grey), and faces from the DCGAN of :mod:`.gan_faces` (64x64,
upscaled to 128x128).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..metrics.boxes import EMPTY_BOX
from ..runs.runner import read_results
from ..smoothing import CenterSmoothing
from .base import CertifySetup, Task
from .experiments import (
    experiment_main,
    experiment_overrides,
    experiment_parser,
    experiment_path,
    guarded,
    library_counts,
    run_experiment,
)

DETECTORS = ("mtcnn", "haar", "hog")  # the first is the default
CLASSICAL = ("haar", "hog")  # the detectors of FaceDetector (CPU, one image at a time)
DETECTOR_NAMES = {"mtcnn": "MTCNN", "haar": "Haar cascade", "hog": "dlib HOG"}
PAPER_BOXES: dict[str, Any] = dict(
    n_center=5_000, n_check=5_000, n_certify=10_000
)  # the paper's face-detection counts; the task's default counts too
OPENCV_INSTALL = "pip install 'opencv-python-headless>=4.8,<5' (version 5 dropped the cascades)"
DLIB_INSTALL = "pip install --no-deps dlib-bin"


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError:  # pragma: no cover - exercised only without OpenCV
        raise ImportError(f"the 'haar' face detector needs OpenCV: {OPENCV_INSTALL}") from None
    return cv2


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError:  # pragma: no cover - exercised only without dlib
        raise ImportError(
            f"the 'hog' face detector and face embeddings need dlib: {DLIB_INSTALL}"
        ) from None
    return dlib


class FaceDetector:
    """The classical detectors, ``"haar"`` or ``"hog"``: a batch of images ``(n, C, H, W)`` in
    ``[0, 1]`` -> boxes ``(n, 4)`` float32 (most confident face, or ``EMPTY_BOX``), one image at a
    time on the CPU. Deterministic. (MTCNN: :func:`face_detector` or :class:`.mtcnn.MTCNN`.)

    ``min_size`` is the smallest face searched, as a fraction of the shorter image side (fewer
    scales: faster, and no tiny false detections in noise). ``cascade`` is an explicit path to a
    Haar cascade XML file (default: OpenCV's frontal-face cascade).
    """

    def __init__(
        self,
        kind: str = "haar",
        min_size: float = 0.3,
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        cascade: str | None = None,
    ) -> None:
        if kind not in CLASSICAL:
            hint = " (MTCNN is face_detector('mtcnn'))" if kind == "mtcnn" else ""
            raise ValueError(f"kind must be one of {CLASSICAL}, got {kind!r}{hint}")
        if not 0.0 < min_size <= 1.0:
            raise ValueError(f"min_size must lie in (0, 1], got {min_size!r}")
        self.kind = kind
        self.min_size = float(min_size)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        if kind == "haar":
            cv2 = _import_cv2()
            path = cascade or str(
                Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
            )
            if not Path(path).is_file():
                raise FileNotFoundError(f"Haar cascade {path} not found: {OPENCV_INSTALL}")
            self._cascade = cv2.CascadeClassifier(path)
            if self._cascade.empty():
                raise ValueError(f"{path} is not a valid OpenCV cascade")
        else:
            self._hog = _import_dlib().get_frontal_face_detector()

    def detect_uint8(self, image: np.ndarray) -> tuple[float, float, float, float]:
        """Most confident box of one grey ``(H, W)`` uint8 image, or ``EMPTY_BOX``."""
        side = int(round(self.min_size * min(image.shape)))
        if self.kind == "haar":
            boxes, _, weights = self._cascade.detectMultiScale3(
                image,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(side, side),
                outputRejectLevels=True,
            )
            if len(boxes) == 0:
                return EMPTY_BOX
            x, y, w, h = (float(v) for v in boxes[int(np.argmax(np.ravel(weights)))])
            return (x, y, x + w, y + h)
        dets, scores, _ = self._hog.run(image, 0, 0.0)
        found = [
            (s, d) for s, d in zip(scores, dets, strict=True) if min(d.width(), d.height()) >= side
        ]
        if not found:
            return EMPTY_BOX
        best = max(found, key=lambda item: item[0])[1]
        return (float(best.left()), float(best.top()), float(best.right()), float(best.bottom()))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be (n, C, H, W) with C = 1 or 3; got {images.shape}")
        grey = images.detach().float().cpu().clamp(0.0, 1.0)
        if grey.shape[1] == 3:
            grey = (grey * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1)
        else:
            grey = grey[:, 0]
        pixels = (grey * 255.0).round().to(torch.uint8).numpy()
        boxes = [self.detect_uint8(np.ascontiguousarray(p)) for p in pixels]
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def face_detector(kind: str = "mtcnn", checkpoint: str | None = None) -> Any:
    """The base function of ``face-boxes``: ``MTCNN`` for ``"mtcnn"`` (``checkpoint``: a folder
    with its three weight files), else ``FaceDetector(kind)`` (``checkpoint``: a Haar cascade XML
    file). Top-level, so that ``functools.partial(face_detector, ...)`` is a picklable factory."""
    if kind not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {kind!r}")
    if kind == "mtcnn":
        from .mtcnn import MTCNN

        return MTCNN(checkpoint)
    return FaceDetector(kind, cascade=checkpoint)


def astronaut() -> torch.Tensor:
    """scikit-image's astronaut: the 256x256 crop around her face, downsampled to 128x128."""
    from skimage import data

    crop = torch.from_numpy(data.astronaut()[0:256, 96:352].copy()).permute(2, 0, 1)
    return F.avg_pool2d(crop.float().unsqueeze(0) / 255.0, 2)[0]


def lfw_faces(n: int, size: int = 100) -> torch.Tensor:
    """The first ``n`` faces of scikit-image's ``lfw_subset`` (25x25 grey), bilinearly upscaled to
    ``size`` x ``size``: ``(n, 1, size, size)`` in ``[0, 1]``."""
    from skimage import data

    faces = torch.from_numpy(data.lfw_subset()[:n].astype(np.float32)).unsqueeze(1)
    return F.interpolate(faces, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def generated_faces(n: int, seed: int = 0, size: int = 128) -> torch.Tensor:
    """``n`` faces of the DCGAN of :mod:`.gan_faces`, upscaled to ``size``: ``(n, 3, s, s)``."""
    from .gan_faces import latent_inputs, load_generator, to_unit

    with torch.no_grad():
        images = to_unit(load_generator()(latent_inputs(n, seed)))
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(
        0, 1
    )


def make_smoother(
    sigma: float, detector: Any = "mtcnn", preset: str = "default", **overrides: Any
) -> CenterSmoothing:
    """Center smoothing of the detector (a name of ``DETECTORS`` or a built detector) in pixel
    space under the Jaccard distance, with the settings of ``centersmooth certify face-boxes
    --preset PRESET`` (by default the paper's face-detection counts, 5,000 / 5,000 / 10,000, with
    our bounds; override any argument)."""
    settings = FaceBoxesTask().preset_settings(preset)
    settings.update(overrides)
    det = face_detector(detector) if isinstance(detector, str) else detector
    return CenterSmoothing(det, metric="jaccard", sigma=sigma, **settings)


INPUT_SETS = ("astronaut", "lfw", "gan")


def input_set(kind: str, n_inputs: int, task: str) -> np.ndarray:
    """The photographs a face task's ``--dataset`` names, ``(N, C, H, W)``: ``astronaut`` (one
    image), or the first ``n_inputs`` of ``lfw`` or ``gan``. One set per run, so that the inputs
    share a shape."""
    if kind == "astronaut":
        images = astronaut()[None]
    elif kind == "lfw":
        images = lfw_faces(n_inputs)
    elif kind == "gan":
        images = generated_faces(n_inputs)
    else:
        raise ValueError(f"--dataset must be one of {INPUT_SETS} for {task}, got {kind!r}")
    return images.numpy()


def input_sets(specs: Sequence[str]) -> list[tuple[str, int]]:
    """Experiment-driver input specs (``astronaut``, ``lfw:N``, ``gan:N``) as (``--dataset``,
    number of inputs) pairs: one results file each, since a file's inputs share one shape."""
    pairs = []
    for spec in specs:
        kind, _, count = spec.partition(":")
        if kind not in INPUT_SETS:
            raise ValueError(f"unknown input set {spec!r}; use astronaut, lfw:N or gan:N")
        pairs.append((kind, 1 if kind == "astronaut" else int(count or 1)))
    return pairs


class FaceBoxesTask(Task):
    """``centersmooth certify face-boxes``: a face detector under the Jaccard distance, MTCNN
    unless ``--detector haar`` or ``hog`` (``FaceBoxesTask(detector)``).

    ``--dataset`` picks the images: ``lfw`` (default; the first ``--n-inputs`` LFW faces, grey
    100x100), ``gan`` (generated faces, 128x128) or ``astronaut`` (one photograph). ``--checkpoint``
    an explicit copy of the detector's files: for MTCNN a folder with ``pnet.pt``, ``rnet.pt`` and
    ``onet.pt`` (checked against the pinned hashes), for Haar a cascade XML file. Inputs must share
    one shape, hence one set per run. Pixel values are in ``[0, 1]``; ``--sigma`` and ``--eps-in``
    are in those units.

    Settings: the paper's face-detection counts (``PAPER_BOXES``: 5,000 / 5,000 / 10,000) by
    default, with our binomial bounds and central candidates, in batches of 250; ``--preset
    paper`` keeps those counts with the paper's Hoeffding bounds and samples-only centers.
    """

    name = "face-boxes"
    description = "face detector (MTCNN; --detector haar or hog), most confident box, Jaccard"
    default_metrics = ("jaccard",)
    default_dataset = "lfw"
    default_settings = dict(PAPER_BOXES, batch_size=250)
    paper_settings = PAPER_BOXES

    def __init__(self, detector: str = DETECTORS[0]) -> None:
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        self.detector = detector

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
        files = None if checkpoint is None else str(checkpoint)
        face_detector(self.detector, files)  # fail early if the detector is missing
        images = input_set(kind, n_inputs, self.name)
        return CertifySetup(
            functools.partial(face_detector, self.detector, files),
            images,
            None,
            np.arange(len(images)),
            {
                "task": self.name,
                "dataset": kind,
                "detector": self.detector,
                "pixel_range": "[0, 1]",
            },
        )


H_VALUES = (0.5, 1.0, 1.5)


def experiment(
    out: Path,
    names: Sequence[str] = ("astronaut", "lfw:3", "gan:2"),
    sigmas: Sequence[float] = (0.05, 0.1),
    detector: str = DETECTORS[0],
    seed: int = 0,
    presets: Sequence[str] = ("default",),
    progress: bool = True,
    **overrides: Any,
) -> list[Path]:
    """Certify each input set (``astronaut``, ``lfw:N``, ``gan:N``) for each sigma at
    ``eps_in = h sigma`` (h in ``H_VALUES``) through the runner: one results file per setting in
    the folder ``out`` (named ``<detector>-<preset>-<set>-sigma<sigma>.jsonl``), continued if it
    exists (:func:`.experiments.run_experiment`). Returns the files."""
    return run_experiment(
        FaceBoxesTask(detector),
        out,
        sigmas,
        H_VALUES,
        presets=presets,
        datasets=input_sets(names),
        seed=seed,
        tag=detector,
        progress=progress,
        **overrides,
    )


def certified_band(
    box: Sequence[float], eps_out: float
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Inner and outer boxes between which every edge of any box within Jaccard distance
    ``eps_out`` of ``box`` lies (``None`` when ``eps_out >= 1`` or ``box`` is empty: no bound).

    With ``t = 1 - eps_out``, IoU in 2-d is at most the IoU of the x-intervals (and of the
    y-intervals), and an interval of width ``w`` keeps 1-d IoU ``>= t`` only if each end moves at
    most ``w (1/t - 1)`` outward and ``w (1 - t)`` inward.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    t = 1.0 - float(eps_out)
    if t <= 0.0 or w <= 0.0 or h <= 0.0:
        return None
    grow_x, grow_y = w * (1.0 / t - 1.0), h * (1.0 / t - 1.0)
    shrink_x, shrink_y = w * (1.0 - t), h * (1.0 - t)
    inner = (x1 + shrink_x, y1 + shrink_y, x2 - shrink_x, y2 - shrink_y)
    outer = (x1 - grow_x, y1 - grow_y, x2 + grow_x, y2 + grow_y)
    return inner, outer


def panel_title(
    name: str, eps_in: float, box: Sequence[float] | None, eps_out: float | None
) -> str:
    """What a panel of the figure shows: the smoothed detector's abstention, a smoothed output
    with no box (no face found, certified to stay so when ``eps_out`` is 0), a certificate that
    says nothing (``eps_out`` at 1, the largest Jaccard distance), or the certified radius."""
    title = f"{name}: eps_in={eps_in:g}"
    if box is None:
        return title + "\nabstained"
    if not (box[2] > box[0] and box[3] > box[1]):
        title += "\nsmoothed: no face"
    if eps_out is None:
        return title + ", not certified"
    if eps_out >= 1.0:
        return title + f", eps_out={eps_out:.3f}: vacuous"
    return title + f", eps_out={eps_out:.3f}"


def figure(
    out: Path,
    results: Path,
    names: Sequence[str] = ("astronaut", "lfw:1", "gan:1"),
    sigma: float = 0.05,
    h: float = 1.0,
    preset: str = "default",
    detector: str = DETECTORS[0],
    **overrides: Any,
) -> None:
    """Each input with its detection (red), the smoothed box (green) and the certified band at
    ``eps_in = h sigma`` (yellow: every edge of the smoothed box at any ``x'`` lies between the
    dashed boxes), ``eps_out`` read from the results files the experiment driver wrote in the
    folder ``results`` (``detector``, ``preset``; ``overrides`` as there, and each input's seed
    read from its row, so that the smoothed box is the certified center)."""
    from ..runs.plotting import pyplot

    plt = pyplot()
    from matplotlib.patches import Rectangle

    det = face_detector(detector)
    smoother = make_smoother(sigma, det, preset, **overrides)
    shown = []
    for kind, count in input_sets(names):
        rows = read_results(experiment_path(results, preset, sigma, kind, detector)).rows
        for i, img in enumerate(torch.from_numpy(input_set(kind, count, "face-boxes"))):
            row = next(
                r
                for r in rows
                if r["input_index"] == i and math.isclose(r["eps_in"], h * sigma, rel_tol=1e-9)
            )
            label = kind if kind == "astronaut" else f"{kind}{i}"
            shown.append((label, img, row["eps_out"], row["input_seed"]))
    fig, axes = plt.subplots(1, len(shown), figsize=(max(3.2 * len(shown), 6.4), 3.6))

    def draw(ax: Any, b: Sequence[float], color: str, style: str = "-") -> None:
        # boxes are in pixel edges, imshow puts pixel (i, j) on [j - 0.5, j + 0.5]
        corner = (b[0] - 0.5, b[1] - 0.5)
        ax.add_patch(Rectangle(corner, b[2] - b[0], b[3] - b[1], fill=False, ec=color, ls=style))

    for ax, (name, img, eps_out, input_seed_i) in zip(np.atleast_1d(axes), shown, strict=True):
        center = smoother.predict(img, seed=input_seed_i).center
        clean = det(img[None])[0].tolist()
        show = img.permute(1, 2, 0).numpy()
        ax.imshow(show[..., 0] if show.shape[2] == 1 else show, cmap="gray", vmin=0, vmax=1)

        if clean[2] > clean[0]:
            draw(ax, clean, "red")
        box = None if center is None else center.tolist()
        if box is not None:
            band = certified_band(box, eps_out) if eps_out is not None else None
            if box[2] > box[0]:
                draw(ax, box, "lime")
            if band is not None:
                if band[0][2] > band[0][0] and band[0][3] > band[0][1]:
                    draw(ax, band[0], "yellow", "--")
                draw(ax, band[1], "yellow", "--")
        ax.set_title(panel_title(name, h * sigma, box, eps_out), fontsize=9)
        ax.axis("off")
    fig.suptitle(
        f"{DETECTOR_NAMES[detector]} face detector, Jaccard distance: detection (red), smoothed "
        "box (green), certified band (yellow, dashed)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.9))  # the title above two-line panel titles
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m centersmooth.tasks.face_boxes``: the experiment (one results file per input
    set and sigma in ``--out``) and its tables, or ``--figure`` from those files."""
    parser = experiment_parser(
        "face_boxes",
        "Certify face boxes of offline photographs in Jaccard distance at eps_in = h sigma "
        f"(h in {H_VALUES}) for every input set and sigma, then print the tables.",
        Path("results/face-boxes"),
        sigmas=(0.05, 0.1),
        presets=("default",),
    )
    parser.add_argument(
        "--inputs",
        nargs="+",
        default=["astronaut", "lfw:3", "gan:2"],
        help="astronaut, lfw:N, gan:N",
    )
    parser.add_argument("--detector", choices=DETECTORS, default=DETECTORS[0])
    parser.add_argument(
        "--library-counts",
        action="store_true",
        help="the library's default sample counts instead of the task's (the paper's 5,000 / "
        "5,000 / 10,000); --n-center and --n-certify still go over them",
    )
    parser.add_argument("--figure", type=Path, help="draw the figure from --out (first sigma)")
    args = parser.parse_args(argv)
    overrides = {**(library_counts() if args.library_counts else {}), **experiment_overrides(args)}
    if args.figure is not None:
        figure_args = (args.figure, args.out, args.inputs, args.sigmas[0])
        drawn = dict(preset=args.presets[0], detector=args.detector, **overrides)
        guarded(parser, lambda: figure(*figure_args, **drawn))
        return
    experiment_main(
        parser,
        args,
        lambda: experiment(
            args.out,
            args.inputs,
            args.sigmas,
            args.detector,
            args.seed,
            args.presets,
            not args.quiet,
            **overrides,
        ),
    )


if __name__ == "__main__":
    main()
