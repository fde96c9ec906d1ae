"""Noisy copies per second of the face detectors on the face-boxes results images, interleaved.

For each image of ``results/face-boxes.md`` (astronaut, lfw0-4, gan0-1) and each sigma, a seeded
batch of noisy copies goes through MTCNN in one call (as the runner sends it) and through the Haar
cascade (one image at a time, as it works), alternating detector and repeat, each on one thread
(torch and OpenCV). Reported per image: copies per second of CPU time of each detector (close to
the wall time on a free core, and little changed by other jobs), and the ratio of their wall
times (interleaved, so a busy machine slows both alike). Then the hours of the face-box result runs
(``results/face_boxes_mtcnn.sh``) these CPU rates imply: detector time only, without the center
search and the distances.

    .venv/bin/python benchmarks/face_detectors.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import torch

from centersmooth.tasks.experiments import library_counts
from centersmooth.tasks.face_boxes import face_detector, input_set, input_sets

INPUTS = ("astronaut", "lfw:5", "gan:2")
PAPER_SAMPLES = 5_000 + 5_000 + 10_000  # centre + check + certify, per input and sigma


def images() -> list[tuple[str, torch.Tensor]]:
    found = []
    for kind, count in input_sets(INPUTS):
        for i, image in enumerate(torch.from_numpy(input_set(kind, count, "face-boxes"))):
            found.append((kind if kind == "astronaut" else f"{kind}{i}", image))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--batch", type=int, default=250, help="noisy copies per call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    detectors = {name: face_detector(name) for name in ("mtcnn", "haar")}
    library = sum(library_counts().values())
    print("| image | sigma | MTCNN copies / CPU s | Haar copies / CPU s | MTCNN / Haar wall time |")
    print("|---|---|---|---|---|")
    hours = {name: {"paper": 0.0, "library": 0.0} for name in detectors}
    for label, image in images():
        for sigma in args.sigmas:
            gen = torch.Generator().manual_seed(0)
            batch = image + sigma * torch.randn((args.batch, *image.shape), generator=gen)
            detectors["mtcnn"](batch[:8])  # warm-up
            times: dict[str, list[float]] = {name: [] for name in detectors}
            cpu: dict[str, list[float]] = {name: [] for name in detectors}
            for _ in range(args.repeats):
                for name, detect in detectors.items():
                    start, start_cpu = time.perf_counter(), time.process_time()
                    detect(batch)
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
            rate = {name: args.batch / statistics.median(t) for name, t in cpu.items()}
            ratio = [m / h for m, h in zip(times["mtcnn"], times["haar"], strict=True)]
            print(
                f"| {label} | {sigma:g} | {rate['mtcnn']:.0f} | {rate['haar']:.0f} | "
                f"{statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f}) |"
            )
            for name in detectors:
                hours[name]["paper"] += PAPER_SAMPLES / rate[name] / 3600
                hours[name]["library"] += library / rate[name] / 3600
    print(
        f"\nDetector CPU hours of every image and sigma above, one thread: paper's counts "
        f"({PAPER_SAMPLES:,} samples per certificate) and the library's ({library:,}):"
    )
    for name, h in hours.items():
        print(f"  {name}: {h['paper']:.2f} h at the paper's counts, {h['library']:.1f} h at ours")


if __name__ == "__main__":
    main()
