"""Set up the device check on a machine without network: a virtual environment over a Python that
already has (a CUDA build of) torch, with the wheels and data of the prepared folder.

Usage: PYTHON benchmarks/device_setup.py --venv DIR [--bundle DIR] [--log FILE]
(run by ``benchmarks/device_check.sh``, with the standard library alone).

- The environment sees the packages of PYTHON (``--system-site-packages``, and a ``.pth`` file
  naming PYTHON's own site folders, since PYTHON may itself live in a virtual environment whose
  packages ``--system-site-packages`` would not show): torch is used as it is, never installed.
- The wheels of the prepared folder (``benchmarks/prepare_device_bundle.py``) whose
  distributions PYTHON lacks are installed with ``pip --no-index --no-deps``: nothing is fetched.
- The project is installed from this checkout with ``--no-deps`` (editable; where pip cannot
  build it, a ``.pth`` file naming ``src`` does the same).
- What the check needs and still lacks is printed in one line, and the exit status is 2; what
  only some parts need is printed in one line too, and those parts are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# module: what it is for. The check cannot run without these.
REQUIRED = {
    "torch": "everything",
    "numpy": "everything",
    "scipy": "the bounds",
    "tqdm": "progress bars",
    "mpmath": "exact grid noise",
    "rapidfuzz": "string distances and their tests",
    "pytest": "the CUDA tests",
    "centersmooth": "the project itself",
}
# module: the part that is skipped without it
OPTIONAL = {
    "ray": "the runner's Ray row",
    "hypothesis": "property tests (none of them needs CUDA)",
    "sklearn": "the bundled 8x8 digits (MNIST comes in the prepared folder)",
}
NO_NETWORK = {
    "PIP_NO_INDEX": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_INPUT": "1",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True, help="where the environment goes")
    parser.add_argument("--bundle", type=Path, default=ROOT / ".device-bundle")
    parser.add_argument("--log", type=Path, help="the set-up's commands and their output")
    args = parser.parse_args()
    log = Log(args.log)
    python = make_environment(args.venv, log)
    bundle = args.bundle if args.bundle.is_dir() else None
    if bundle is None:
        log.say(
            f"device_check: no prepared folder at {args.bundle}: no wheels or data beyond this "
            "Python's (make one with `python benchmarks/prepare_device_bundle.py` where there "
            "is network, and bring it along)"
        )
    else:
        install_wheels(python, bundle / "wheels", log)
    install_project(python, log)
    found = importable(python, [*REQUIRED, *OPTIONAL])
    missing = [f"{m} ({REQUIRED[m]})" for m in REQUIRED if not found[m]]
    skipped = [f"{m} ({OPTIONAL[m]})" for m in OPTIONAL if not found[m]]
    if skipped:
        log.say("device_check: not installed, those parts are skipped: " + "; ".join(skipped))
    if missing:
        where = "the prepared folder" if bundle is not None else "a prepared folder (none found)"
        log.say(
            f"device_check: missing, cannot run: {'; '.join(missing)}. Bring them as wheels for "
            f"Python {sys.version_info.major}.{sys.version_info.minor} in {where}, or use a "
            "Python that has them (DEVICE_CHECK_PYTHON)"
        )
        return 2
    log.say(f"device_check: environment ready: {python}")
    return 0


class Log:
    """Messages to stderr and, with the commands' output, to the log file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def write(self, text: str) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(text if text.endswith("\n") else text + "\n")

    def say(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        self.write(line)

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **NO_NETWORK}
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        self.write(f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}(exit {result.returncode})")
        return result


def make_environment(path: Path, log: Log) -> Path:
    """A virtual environment over this Python's packages (kept if it exists); its Python."""
    python = path / "bin" / "python"
    marker = path / "device_check_parent.txt"  # the Python it was made over
    if not python.exists() or not marker.is_file() or marker.read_text() != sys.executable:
        builder = venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True)
        builder.clear = path.exists()
        builder.create(path)
        marker.write_text(sys.executable)
        log.write(f"created {path} over {sys.executable} (its site packages, no pip of its own)")
    # this Python's site folders, after the environment's own: a Python that is itself in a
    # virtual environment keeps its packages there, which --system-site-packages does not show
    inner = subprocess.run(
        [str(python), "-c", "import site, json; print(json.dumps(site.getsitepackages()))"],
        capture_output=True,
        text=True,
        check=True,
    )
    site_dir = Path(json.loads(inner.stdout)[0])
    import site

    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (site_dir / "_device_check_parent.pth").write_text("".join(p + "\n" for p in outer))
    log.write(f"{site_dir}/_device_check_parent.pth names {outer}")
    return python


def installed_distributions(python: Path) -> set[str]:
    code = (
        "import importlib.metadata as m, json, re\n"
        "print(json.dumps(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() "
        "for d in m.distributions() if d.metadata['Name']})))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def install_wheels(python: Path, wheels: Path, log: Log) -> None:
    """Install the folder's wheels whose distributions this Python lacks, offline, no deps."""
    if not wheels.is_dir():
        return
    have = installed_distributions(python)
    wanted = []
    for wheel in sorted(wheels.glob("*.whl")):
        name = wheel.name.split("-")[0].replace("_", "-").lower()
        if name not in have:
            wanted.append(str(wheel))
    if not wanted:
        log.write(f"every wheel in {wheels} is installed already")
        return
    cmd = [str(python), "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir"]
    result = log.run([*cmd, "--no-compile", *wanted])
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        log.say(f"device_check: the wheels did not install: {' '.join(tail)}")


def install_project(python: Path, log: Log) -> None:
    """This checkout, editable, without its dependencies (torch above all); a ``.pth`` file
    naming ``src`` where pip cannot build it here."""
    cmd = [str(python), "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation"]
    result = log.run([*cmd, "--no-cache-dir", "-e", str(ROOT)])
    if result.returncode == 0:
        return
    site_dir = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site_dir) / "_device_check_project.pth").write_text(str(ROOT / "src") + "\n")
    log.write("pip could not install the project here: src is on the path through a .pth file")


def importable(python: Path, modules: list[str]) -> dict[str, bool]:
    code = (
        "import importlib.util, json, sys\n"
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [str(python), "-c", code, *modules], capture_output=True, text=True, check=True, cwd="/"
    )
    found: dict[str, bool] = json.loads(out.stdout)
    return found


if __name__ == "__main__":
    sys.exit(main())
