"""``centersmooth attack TASK ...``: attack the smoothed model, write rows beside its certificates.

For each input: one certificate (Algorithm 2, all ``eps_in`` on one sample set), then for each
``eps_in`` the attack of :mod:`centersmooth.evaluation.attack`. Each JSON line holds the certified
``eps_out``, the attacked distance ``d(fhat(x), fhat(x'))``, their ratio and the baselines (the
procedure's own noise at ``x`` and a random ``x'`` on the sphere). The results are written to a
temporary file beside ``--out`` and moved into place at the end, so an existing file is never left
half written; an existing ``--out`` is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:
    import numpy as np

    from ..evaluation.attack import AttackResult

# torch, NumPy and the attack are imported by ``run``: `centersmooth attack --help` stays fast.
FORMAT = "centersmooth-attack"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .commands import (
        _add_sample_arguments,
        _positive_int,
        add_radius_arguments,
        add_source_arguments,
    )

    add_source_arguments(p, n_inputs=10)

    cert = p.add_argument_group("certificate (as for `centersmooth certify`)")
    add_radius_arguments(cert, "attack within")
    cert.add_argument("--metric", help="distance (default: the task's first; l2 with --model)")
    _add_sample_arguments(cert, preset=False)
    cert.add_argument(
        "--candidates",
        type=_positive_int,
        help="center among the first K samples (default: all pairs, or the task's)",
    )
    cert.add_argument(
        "--nearest-candidate",
        action=argparse.BooleanOptionalAction,
        help="the nearest-candidate bound (default: on); --no-nearest-candidate gives the paper's",
    )

    att = p.add_argument_group("attack")
    att.add_argument("--steps", type=_positive_int, default=40, help="gradient steps per restart")
    att.add_argument("--restarts", type=_positive_int, default=3, help="random restarts")
    att.add_argument("--n-noise", type=_positive_int, default=64, help="noise draws per step")
    att.add_argument("--n-score", type=_positive_int, default=512, help="draws to rank restarts")

    run = p.add_argument_group("execution")
    run.add_argument("--out", type=Path, required=True, help="results file (JSON lines)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    run.add_argument(
        "--device", help="cpu, cuda, ... (default: where the model's weights are; cpu)"
    )
    run.add_argument(
        "--threads", type=_positive_int, help="torch CPU threads (default: torch's, one per core)"
    )
    run.add_argument("--quiet", action="store_true", help="no per-input lines, no table")


def _setup(args: argparse.Namespace) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any], str]:
    """Model, inputs, their indices, run information and the distance, from the arguments."""
    import numpy as np

    from ..tasks.user import user_model_factory
    from .commands import CLIError, task_setup, user_inputs

    if args.numpy_model:
        raise CLIError("--numpy-model: the attack follows gradients, it needs a torch model")
    if args.model is not None or args.inputs is not None:
        inputs = user_inputs(args)
        factory = user_model_factory(args.model)
        info: dict[str, Any] = {"task": "user", "model": args.model, "inputs": str(args.inputs)}
        return factory(), inputs, np.arange(len(inputs)), info, args.metric or "l2"
    task, setup = task_setup(args)
    metric = args.metric or task.default_metrics[0]
    return setup.model_factory(), setup.inputs, setup.indices, dict(setup.run_info), metric


def _number(value: float) -> float | str | None:
    """JSON has no inf / nan: write them as strings, as ``float()`` reads them back."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def _row(index: int, metric: str, res: AttackResult, noise_floor: float) -> dict[str, Any]:
    return {
        "input_index": int(index),
        "metric": metric,
        "eps_in": res.eps_in,
        "eps_out": _number(res.eps_out),
        "attacked_distance": _number(res.attacked_distance),
        "ratio": _number(res.ratio),
        "violated": res.violated,
        "abstained": res.abstained,
        "attacked_abstained": res.attacked_abstained,
        "perturbation_norm": _number(res.perturbation_norm),
        "noise_floor": _number(noise_floor),
        "random_distance": _number(res.random_distance),
        "surrogate_clean": _number(res.surrogate_clean),
        "surrogate_attacked": _number(res.surrogate_attacked),
        "steps": res.steps,
        "restarts": res.restarts,
    }


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..evaluation.attack import attack
    from ..runs.runner import check_device, check_results_path
    from ..sampling import prepare_input
    from ..smoothing import CenterSmoothing
    from ..tasks import get_task
    from .commands import CLIError, smoothing_settings

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    check_results_path(out, "--out")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the directory of --out ({out.parent}) does not exist")
    check_device(args.device)
    model, inputs, indices, info, metric = _setup(args)
    eps_in = [e * args.sigma for e in args.eps_in] if args.eps_in_relative else list(args.eps_in)
    settings = smoothing_settings(args, get_task(args.task) if args.task else None)
    smoother = CenterSmoothing(model, metric=metric, **settings)
    if max(eps_in) > smoother.max_eps_in:
        raise CLIError(
            f"eps_in={max(eps_in):g} exceeds the largest certifiable radius "
            f"{smoother.max_eps_in:.4g} with n_certify={smoother.n_certify}"
        )
    header = {
        "record": "header",
        "format": FORMAT,
        "version": __version__,
        "config": {
            "eps_in": eps_in,
            "metric": metric,
            "smoothing": {k: v for k, v in settings.items() if k != "device"},
            "attack": {
                "steps": args.steps,
                "restarts": args.restarts,
                "n_noise": args.n_noise,
                "n_score": args.n_score,
            },
            "seed": args.seed,
            "run_info": info,
        },
    }
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    rows: list[dict[str, Any]] = []
    try:
        with tmp.open("w") as fh:
            fh.write(json.dumps(header) + "\n")
            for k, (index, item) in enumerate(zip(indices, inputs, strict=True)):
                start = time.monotonic()
                # fed as certify feeds it: a module gets its weights' float type
                x, _ = prepare_input(
                    torch.from_numpy(np.array(item)), smoother.base_function, smoother.device
                )
                seed = args.seed * 1_000_003 + 7 * k
                cert = smoother.certify(x, eps_in, seed=seed)
                floor = math.nan
                if not cert.abstained:
                    again = smoother.predict(x, seed=seed + 5)
                    if not again.abstained:
                        floor = float(
                            smoother.metric(
                                torch.as_tensor(cert.center).unsqueeze(0),
                                torch.as_tensor(again.center).unsqueeze(0),
                            )[0]
                        )
                for eps in eps_in:
                    res = attack(
                        smoother,
                        x,
                        eps,
                        certificate=cert,
                        steps=args.steps,
                        restarts=args.restarts,
                        n_noise=args.n_noise,
                        n_score=args.n_score,
                        noise_floor=False,  # computed once per input above
                        seed=seed + 1_000 * (1 + eps_in.index(eps)),
                    )
                    row = _row(int(index), metric, res, floor)
                    row["seconds"] = round(time.monotonic() - start, 2)
                    rows.append(row)
                    fh.write(json.dumps(row) + "\n")
                    fh.flush()
                    if not args.quiet:
                        print(
                            f"input {index}: eps_in {eps:g} attacked {res.attacked_distance:.4g} "
                            f"eps_out {res.eps_out:.4g} ratio {res.ratio:.3f}",
                            file=sys.stderr,
                        )
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    if not args.quiet:
        print(summary_table(rows))
        print(f"{len(rows)} rows in {out}")
    return 0


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Per ``eps_in``: medians of the attacked distance, ``eps_out``, their ratio; max ratio."""
    import numpy as np

    lines = [
        "| metric | eps_in | inputs | median attacked | median eps_out | median ratio | "
        "max ratio | violations | median noise floor | median random |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["metric"], r["eps_in"]) for r in rows})
    for metric, eps in keys:
        sel = [r for r in rows if r["metric"] == metric and r["eps_in"] == eps]

        def col(name: str, sel: list[dict[str, Any]] = sel) -> np.ndarray:
            vals = [r[name] for r in sel if r[name] is not None]
            return np.asarray([float(v) for v in vals], dtype=float)

        ratio = col("ratio")
        ratio = ratio[np.isfinite(ratio)]

        def med(a: np.ndarray) -> str:
            a = a[np.isfinite(a)]
            return f"{np.median(a):.4g}" if a.size else "-"

        lines.append(
            f"| {metric} | {eps:g} | {len(sel)} | {med(col('attacked_distance'))} | "
            f"{med(col('eps_out'))} | {med(ratio)} | "
            f"{(f'{ratio.max():.4g}' if ratio.size else '-')} | "
            f"{sum(bool(r['violated']) for r in sel)} | {med(col('noise_floor'))} | "
            f"{med(col('random_distance'))} |"
        )
    return "\n".join(lines)


HELP = "attack the smoothed model within eps_in and compare with the certified eps_out"
