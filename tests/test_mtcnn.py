"""MTCNN (``tasks/mtcnn.py``): the boxes of facenet-pytorch's own MTCNN (the detector the paper
ran), the faces dlib finds, the same boxes alone as in a batch, the empty box and a certified "no
face" where there is none, NMS and the crops against plain references, missing weights, and
``face-boxes`` end to end with MTCNN as its default detector.

Box tolerance: ``TOL_PX`` pixels. The same function computed with its float32 sums in another
order (another batch size, or facenet-pytorch's crops and resizing) moves an O-net offset by a few
float32 roundings, which the box size (at most 128 pixels here) turns into about 1e-5 pixels
(measured: at most 2.3e-5 over 80 noisy copies, 1.9e-5 against facenet-pytorch over 99); a
different decision anywhere in the cascade moves a box by a large fraction of a pixel or more.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from centersmooth.cli import commands as cli
from centersmooth.data import weights
from centersmooth.metrics import EMPTY_BOX
from centersmooth.metrics.boxes import box_iou
from centersmooth.runs.runner import read_results
from centersmooth.tasks import face_boxes, mtcnn

pytestmark = pytest.mark.needs("scikit-image")  # the photographs (astronaut, LFW crops)
WEIGHTS = pytest.mark.needs("mtcnn")  # the weights, in the facenet-pytorch 2.6.0 the set-up unpacks

ROOT = Path(__file__).resolve().parents[1]
TOL_PX = 1e-3
RESULTS_INPUTS = ("astronaut", "lfw:5", "gan:2")  # the images of results/face-boxes.md


@pytest.fixture(scope="module")
def detector() -> mtcnn.MTCNN:
    return mtcnn.MTCNN()  # its tests are marked WEIGHTS


@pytest.fixture(scope="module")
def face_sets() -> list[tuple[str, torch.Tensor]]:
    """(set, images) for each input set (one shape per set)."""
    return [
        (kind, torch.from_numpy(face_boxes.input_set(kind, count, "face-boxes")))
        for kind, count in face_boxes.input_sets(RESULTS_INPUTS)
    ]


def noisy(images: torch.Tensor, copies: int, sigma: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    batch = images.repeat(copies, 1, 1, 1)
    return batch + sigma * torch.randn(batch.shape, generator=gen)


def found(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


# ----------------------------------------------------------------------------- references
def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[int]:
    """Greedy NMS of one group (torchvision's rule): take the most confident box left, drop the
    boxes it overlaps by IoU above the threshold, repeat."""
    left = sorted(range(len(scores)), key=lambda j: (-float(scores[j]), j))
    kept = []
    while left:
        kept.append(left[0])
        overlap = box_iou(boxes[left[0]], boxes[left[1:]]) if len(left) > 1 else torch.zeros(0)
        left = [j for j, o in zip(left[1:], overlap.tolist(), strict=True) if o <= iou_threshold]
    return kept


def stub_batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """``torchvision.ops.boxes.batched_nms`` for facenet-pytorch: NMS per index, by score."""
    kept = []
    for group in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == group)[:, 0]
        picks = reference_nms(boxes[members], scores[members], iou_threshold)
        kept += [int(members[k]) for k in picks]
    order = torch.tensor(kept, dtype=torch.long)
    return order[torch.argsort(scores[order], descending=True, stable=True)] if kept else order


@pytest.fixture(scope="module")
def facenet_mtcnn() -> Iterator[object]:
    """facenet-pytorch 2.6.0's MTCNN (the set-up unpacks its wheel into the cache: installed,
    its torchvision requirement would be unmet), its torchvision imports supplied by a stand-in:
    it uses torchvision only for ``batched_nms`` (given above, with torchvision's rule) and, in
    ``extract_face``, ``to_tensor`` (not used here)."""
    names: tuple[str, ...] = ("torchvision", "torchvision.ops", "torchvision.ops.boxes")
    names += ("torchvision.transforms", "torchvision.transforms.functional")
    if importlib.util.find_spec("requests") is None:  # imported, for downloads we never make
        names += ("requests", "requests.adapters")
    stand_in = {name: types.ModuleType(name) for name in names}
    stand_in["torchvision.ops.boxes"].batched_nms = stub_batched_nms  # type: ignore[attr-defined]
    if "requests.adapters" in stand_in:
        stand_in["requests.adapters"].HTTPAdapter = object  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(weights.cache_dir() / weights.MTCNN_REFERENCE_DIR))
        for name, module in stand_in.items():
            patch.setitem(sys.modules, name, module)
        from facenet_pytorch import MTCNN as FacenetMTCNN

        yield FacenetMTCNN(select_largest=False)
        for name in [n for n in sys.modules if n.startswith("facenet_pytorch")]:
            del sys.modules[name]


def facenet_boxes(reference: object, images: torch.Tensor) -> torch.Tensor:
    """The reference's most probable box per image, as pixel edges clipped to the image (its
    boxes are 1-based inclusive pixel indices), or the empty box."""
    pixels = (images.clamp(0, 1) * 255).round().expand(-1, 3, -1, -1)
    boxes, probs = reference.detect(pixels.permute(0, 2, 3, 1).contiguous())  # type: ignore[attr-defined]
    height, width = images.shape[2:]
    out = torch.zeros(len(images), 4)
    for i, (b, p) in enumerate(zip(boxes, probs, strict=True)):
        if b is None:
            continue
        x1, y1, x2, y2 = np.asarray(b, dtype=np.float64)[int(np.argmax(np.asarray(p, float)))]
        edges = torch.tensor([x1 - 1, y1 - 1, x2, y2]).clamp(min=0)
        out[i] = torch.minimum(edges, torch.tensor([width, height, width, height]))
    return out


# ----------------------------------------------------------------------------- the detector
@WEIGHTS
def test_the_boxes_of_facenet_pytorchs_mtcnn(
    detector: mtcnn.MTCNN, facenet_mtcnn: object, face_sets: list[tuple[str, torch.Tensor]]
) -> None:
    """On the clean faces and on noisy copies (sigma 0.05 and 0.1): the same face found or not,
    and the same box within TOL_PX."""
    checked = 0
    for seed, (_, images) in enumerate(face_sets):
        for sigma in (0.0, 0.05, 0.1):
            batch = noisy(images, 1, sigma, seed)
            ours, theirs = detector(batch), facenet_boxes(facenet_mtcnn, batch)
            assert torch.equal(found(ours), found(theirs))
            assert float((ours - theirs).abs().max()) <= TOL_PX
            checked += int(found(ours).sum())
    assert checked >= 18  # of 24 images: faces, not empty boxes, were compared


@pytest.mark.needs("mtcnn", "dlib")
def test_finds_the_faces_dlib_finds(
    detector: mtcnn.MTCNN, face_sets: list[tuple[str, torch.Tensor]]
) -> None:
    """Every bundled face image has a face box, and where dlib's HOG detector (one upsampling)
    finds a face, IoU >= 0.5 with its box (the usual criterion for two detections of one object;
    measured 0.55-0.90: dlib's boxes are tighter, from the brows to the chin)."""
    import dlib

    hog = dlib.get_frontal_face_detector()
    compared = []
    for kind, images in face_sets:
        boxes = detector(images)
        assert bool(found(boxes).all()), kind
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
        for i, image in enumerate(pixels.permute(0, 2, 3, 1).contiguous().numpy()):
            rects, scores, _ = hog.run(image, 1, 0.0)
            if len(rects) == 0:
                continue
            r = rects[int(np.argmax(scores))]
            height, width = image.shape[:2]
            theirs = torch.tensor(
                [max(r.left(), 0), max(r.top(), 0), min(r.right() + 1, width)]
                + [min(r.bottom() + 1, height)],
                dtype=torch.float32,
            )
            compared.append(float(box_iou(boxes[i], theirs)))
    assert len(compared) >= 7  # dlib finds all but lfw4 here
    assert min(compared) >= 0.5


@WEIGHTS
def test_a_batch_gives_each_image_its_own_box(
    detector: mtcnn.MTCNN, face_sets: list[tuple[str, torch.Tensor]]
) -> None:
    """Noisy copies alone and all in one call: the same boxes within TOL_PX; and images without
    a face in the same batch keep the empty box."""
    for seed, (kind, images) in enumerate(face_sets[1:]):
        batch = noisy(images, 2 if kind == "gan" else 1, 0.1, seed)
        if kind == "lfw":  # grey 100x100, like the non-faces below
            batch = torch.cat([batch, non_faces(4), torch.full((1, 1, 100, 100), 0.5)])
        together = detector(batch)
        alone = torch.cat([detector(batch[i : i + 1]) for i in range(len(batch))])
        assert torch.equal(found(together), found(alone))
        assert float((together - alone).abs().max()) <= TOL_PX
        if kind == "lfw":
            assert torch.equal(together[-5:], torch.zeros(5, 4))


def non_faces(n: int) -> torch.Tensor:
    """The first ``n`` non-face crops of scikit-image's ``lfw_subset`` (its last 100), upscaled
    as the faces are."""
    from skimage import data

    crops = torch.from_numpy(data.lfw_subset()[100 : 100 + n].astype(np.float32)).unsqueeze(1)
    return F.interpolate(crops, size=(100, 100), mode="bilinear", align_corners=False).clamp(0, 1)


@WEIGHTS
def test_no_face_gives_the_empty_box(detector: mtcnn.MTCNN) -> None:
    """The documented path: the empty box and probability 0, for non-face crops and blank images
    (its certificate: ``test_face_tasks.test_certifies_the_empty_box_when_no_face``)."""
    blank = [torch.full((1, 1, 100, 100), 0.5), torch.zeros(1, 1, 100, 100)]
    boxes, confidence = detector.detect(torch.cat([non_faces(8), *blank]))
    assert boxes.dtype == torch.float32 and boxes.shape == (10, 4)
    assert torch.equal(boxes, torch.tensor([EMPTY_BOX] * 10))
    assert torch.equal(confidence, torch.zeros(10))


def test_nms_keeps_what_greedy_nms_keeps() -> None:
    """Random boxes in 5 groups against the one-box-at-a-time reference, at both MTCNN
    thresholds; groups never suppress each other."""
    gen = torch.Generator().manual_seed(0)
    corners = torch.rand(300, 2, generator=gen) * 20
    boxes = torch.cat([corners, corners + 8 + torch.rand(300, 2, generator=gen) * 30], dim=1)
    scores = torch.rand(300, generator=gen)
    groups = torch.randint(0, 5, (300,), generator=gen)
    for threshold in (0.5, 0.7):
        kept = mtcnn.nms(boxes, scores, groups, threshold)
        expected = set()
        for g in range(5):
            members = torch.nonzero(groups == g)[:, 0]
            picks = reference_nms(boxes[members], scores[members], threshold)
            expected |= {int(members[k]) for k in picks}
        assert sorted(kept.tolist()) == sorted(expected)
        assert 100 < len(expected) < 270  # many suppressed, many kept
    assert mtcnn.nms(boxes[:0], scores[:0], groups[:0], 0.5).numel() == 0


def test_crops_equal_area_resampling_of_the_region() -> None:
    """``crop_resize`` from summed-area tables against ``F.interpolate(mode="area")`` of each
    region (down- and upsampling; float32 sums of 8-bit values are exact)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 3, 40, 50), generator=gen).float()
    table = mtcnn._summed_area(images)
    crops = torch.tensor([[0, 0, 50, 40], [5, 7, 17, 30], [49, 39, 50, 40], [10, 3, 11, 40]])
    groups = torch.tensor([0, 1, 2, 1])
    for size in (24, 48):
        got = mtcnn.crop_resize(table, crops, groups, size)
        for k, (x0, y0, x1, y1) in enumerate(crops.tolist()):
            region = images[groups[k] : groups[k] + 1, :, y0:y1, x0:x1]
            expected = F.interpolate(region, size=(size, size), mode="area")[0]
            assert torch.allclose(got[k], expected, atol=1e-4, rtol=0)


def test_missing_or_altered_weights_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(weights.MissingWeightsError, match=r"facenet-pytorch==2\.6\.0"):
        mtcnn.MTCNN(tmp_path)
    (tmp_path / "pnet.pt").write_bytes(b"not the weights")
    with pytest.raises(weights.WeightsChecksumError, match="SHA-256"):
        mtcnn.MTCNN(tmp_path)
    with pytest.raises(ValueError, match="min_face_size"):
        mtcnn.MTCNN(min_face_size=8)
    with pytest.raises(ValueError, match="thresholds"):
        mtcnn.MTCNN(thresholds=(0.6, 0.7))
    with pytest.raises(ValueError, match="factor"):
        mtcnn.MTCNN(factor=1.0)
    with pytest.raises(ValueError, match="net must be"):
        weights.mtcnn_state("qnet")
    assert mtcnn.pyramid_scales(100, 100, 20.0, 0.709)[0] == pytest.approx(0.6)
    assert mtcnn.pyramid_scales(11, 100, 12.0, 0.709) == []


@WEIGHTS
def test_rejects_images_of_the_wrong_shape(detector: mtcnn.MTCNN) -> None:
    with pytest.raises(ValueError, match="images must be"):
        detector(torch.zeros(2, 2, 50, 50))
    assert torch.equal(detector(torch.full((3, 30, 30), 0.5)), torch.zeros(1, 4))  # one image


# ----------------------------------------------------------------------------- face-boxes
@WEIGHTS
def test_face_boxes_runs_mtcnn_by_default(
    detector: mtcnn.MTCNN,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The driver at tiny counts writes MTCNN's results file (the detector in its header); the
    command without --detector continues it (MTCNN is its default); a wrong --detector is one
    line and status 2; the figure draws from it. (At these counts MTCNN's boxes, which vary
    continuously with the noise, abstain for 24 of 100 seeds on this face, so nothing here
    depends on whether it certifies.)"""
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)  # --threads 1: not for the rest
    counts = ["--n-center", "100", "--n-certify", "150", "--delta", "0.25"]
    driver = ["--out", str(tmp_path), "--inputs", "lfw:1", "--sigmas", "0.05", *counts]
    face_boxes.main([*driver, "--library-counts", "--threads", "1", "--quiet"])
    path = tmp_path / "mtcnn-default-lfw-sigma0.05.jsonl"
    results = read_results(path)
    assert results.header is not None
    assert results.header["config"]["run_info"]["detector"] == "mtcnn"
    smoothing = results.header["config"]["smoothing"]
    assert (smoothing["n_center"], smoothing["n_check"], smoothing["n_certify"]) == (100, 100, 150)
    assert len(results.rows) == 3
    assert "face-boxes / lfw" in capsys.readouterr().out
    code = cli.main(
        ["certify", "face-boxes", "--dataset", "lfw", "--n-inputs", "1", "--sigma", "0.05",
         "--eps-in", "0.5", "1", "1.5", "--eps-in-relative", "--n-center", "100", "--n-check",
         "100", "--n-certify", "150", "--delta", "0.25", "--out", str(path), "--resume",
         "--quiet"]
    )  # fmt: skip
    assert code == 0 and read_results(path).rows == results.rows
    for wrong in (["face-boxes", "--detector", "yolo"], ["gan-faces", "--detector", "haar"]):
        code = cli.main(["certify", *wrong, "--sigma", "0.05", "--eps-in", "0.05", "--out",
                         str(tmp_path / "never.jsonl"), "--quiet"])  # fmt: skip
        assert code == 2 and not (tmp_path / "never.jsonl").exists()
        assert "detector" in capsys.readouterr().err
    face_boxes.main([*driver, "--figure", str(tmp_path / "boxes.png")])
    assert (tmp_path / "boxes.png").stat().st_size > 0
    # the tables of results/face-boxes.md, from this file
    script = ROOT / "results" / "face_boxes_summary.py"
    spec = importlib.util.spec_from_file_location("face_boxes_summary", script)
    assert spec is not None and spec.loader is not None
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    text = summary.tables(summary.load(tmp_path))
    assert "| lfw0 | MTCNN | face |" in text
    assert "| MTCNN | 0.05 | 100 / 100 / 150 | 1 of 1 |" in text


def test_library_counts_are_the_settings_defaults() -> None:
    from centersmooth.settings import SmoothingSettings
    from centersmooth.tasks.experiments import library_counts

    defaults = SmoothingSettings()
    assert library_counts() == {
        "n_center": defaults.n_center,
        "n_check": defaults.n_check,
        "n_certify": defaults.n_certify,
    }


@pytest.mark.cuda
@WEIGHTS
def test_mtcnn_on_cuda_finds_the_boxes_it_finds_on_the_cpu(
    detector: mtcnn.MTCNN, face_sets: list[tuple[str, torch.Tensor]]
) -> None:
    """The same detections on a CUDA device (TF32 convolutions may move a box by a small
    fraction of a pixel: IoU >= 0.98)."""
    on_cuda = mtcnn.MTCNN().to("cuda")
    for seed, (_, images) in enumerate(face_sets):
        batch = noisy(images, 4, 0.05, seed)
        cpu, gpu = detector(batch), on_cuda(batch.cuda()).cpu()
        assert torch.equal(found(cpu), found(gpu))
        assert float(box_iou(cpu, gpu).min()) >= 0.98
