"""The package's import arrows are the ones the README draws: every group imports only the groups
below it, so the method never depends on runs, evaluation, tasks or the command line."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "centersmooth"
GROUPS = {"cli", "tasks", "runs", "evaluation", "metrics", "data"}  # the rest: the method
ALLOWED = {
    "cli": {"tasks", "runs", "evaluation", "data", "method", "metrics"},
    "tasks": {"runs", "method", "metrics", "data"},
    "runs": {"method", "metrics"},
    "evaluation": {"method", "metrics"},
    "method": {"metrics"},
    "metrics": {"data"},
    "data": set(),
}


def group_of(module: str) -> str:
    first = module.split(".")[0]
    return first if first in GROUPS else "method"


def imports() -> list[tuple[str, str]]:
    """(importing module, imported module) for every import inside the package, lazy ones too,
    both relative to ``centersmooth``."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        package = parts if parts[-1] == "__init__" else parts[:-1]
        package = [p for p in package if p != "__init__"]
        module = ".".join(p for p in parts if p != "__init__") or "__init__"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                base = package[: len(package) - (node.level - 1)]
                if node.module:
                    found.append((module, ".".join([*base, node.module])))
                else:  # from . import a, b: each name is a module (or __version__)
                    found += [(module, ".".join([*base, a.name])) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "centersmooth."
            ):
                found.append((module, node.module.removeprefix("centersmooth.")))
    return found


def test_every_import_follows_an_allowed_arrow() -> None:
    wrong = []
    for module, target in imports():
        if target in ("__version__", ""):
            continue
        source, dest = group_of(module), group_of(target)
        if module in ("__init__", "__main__") or source == dest:  # the package's own entries
            continue
        if dest not in ALLOWED[source]:
            wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_the_arrows_find_imports() -> None:
    found = imports()
    assert ("smoothing", "settings") in found and ("runs.workers", "smoothing") in found
    assert ("metrics.lpips", "data.weights") in found  # a lazy import inside a function


def test_dir_of_the_package_lists_each_public_name_once() -> None:
    import centersmooth

    centersmooth.CenterSmoothing  # noqa: B018 - imported on first use, then also a global
    names = dir(centersmooth)
    assert len(names) == len(set(names)) and set(centersmooth.__all__) <= set(names)
