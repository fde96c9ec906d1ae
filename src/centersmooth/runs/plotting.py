"""The report's figures, drawn with matplotlib, an optional dependency (the ``plots`` extra)
imported only when a figure is drawn. ``report`` works out what to draw (``Curve``,
``Distribution``); this module draws it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PLOTS_EXTRA = "pip install 'centersmooth[plots]' (or pip install matplotlib)"
RUN_STYLES = (  # line style and marker per run (file), so runs differ beyond colour
    ("-", "o"),
    ("--", "s"),
    (":", "^"),
    ("-.", "D"),
    ((0, (5, 1, 1, 1, 1, 1)), "v"),
    ((0, (1, 1)), "P"),
)
NOT_CERTIFIED_NOTE = (
    "n%: share of the inputs not certified (abstained, eps_in beyond max_eps_in, or vacuous); "
    "a band reaching the top is open above (its 75th percentile is infinite)"
)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, or an ImportError that says how to
    install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"drawing figures needs matplotlib: {PLOTS_EXTRA}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def available() -> bool:
    """Whether matplotlib can be imported (figures can be drawn)."""
    try:
        pyplot()
    except ImportError:
        return False
    return True


def save(fig: Any, path: Path, dpi: int = 100) -> None:
    """Write ``fig`` to ``path`` (legends outside the axes included) and close it."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)


def _colors(plt: Any) -> list[str]:
    return list(plt.rcParams["axes.prop_cycle"].by_key()["color"])


@dataclass(frozen=True)
class Curve:
    """One line of the eps_out-against-eps_in figure: the median and quartiles of eps_out at
    each eps_in (``inf`` where too many inputs were not certified for the quantile to be
    finite) and the share of inputs not certified there."""

    label: str
    run: int  # the run's position: its line style and marker
    eps_in: Sequence[float]
    median: Sequence[float]
    low: Sequence[float]  # 25th percentile
    high: Sequence[float]  # 75th percentile
    not_certified: Sequence[float]


def curves_figure(curves: Sequence[Curve], title: str) -> Any:
    """Median eps_out against eps_in with its interquartile band, a colour per curve and a line
    style and marker per run. Where inputs were not certified, their share is written at the
    point; a quartile that is infinite (over a quarter of the inputs not certified) draws the
    band up to the top of the axes, and an infinite median puts its marker there, pointing up.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = _colors(plt)
    finite = [v for c in curves for v in (*c.median, *c.low, *c.high) if math.isfinite(v)] or [
        0.0,
        1.0,
    ]
    lo, hi = min(finite), max(finite)
    pad = 0.08 * ((hi - lo) or abs(hi) or 1.0)
    bottom, top = lo - pad, hi + 3 * pad  # room above for open bands and their labels
    labelled_top = False  # a share written above the axes: the title moves up to clear it
    for k, curve in enumerate(curves):
        color = colors[k % len(colors)]
        style, marker = RUN_STYLES[curve.run % len(RUN_STYLES)]
        x = np.asarray(curve.eps_in, dtype=float)
        median = np.array([v if math.isfinite(v) else np.nan for v in curve.median])
        ax.plot(x, median, linestyle=style, color=color, marker=marker, label=curve.label)
        low = np.array([v if math.isfinite(v) else top for v in curve.low])
        high = np.array([min(v, top) for v in curve.high])
        ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
        for xi, m, share in zip(x, curve.median, curve.not_certified, strict=True):
            if not math.isfinite(m):
                ax.plot([xi], [top], marker="^", color=color, clip_on=False)
            if share > 0:
                y = m if math.isfinite(m) else top
                labelled_top |= y >= top
                ax.annotate(
                    f"{share:.0%}", (xi, y), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=7, color=color, annotation_clip=False,
                )  # fmt: skip
    ax.set_ylim(bottom, top)
    ax.set_xlabel("eps_in")
    ax.set_ylabel("eps_out (median and interquartile band)")
    ax.set_title(title, pad=18 if labelled_top else 6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, handlelength=4, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if any(share > 0 for c in curves for share in c.not_certified):
        fig.text(0.01, -0.02, NOT_CERTIFIED_NOTE, fontsize=7, ha="left", va="top", wrap=True)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Step:
    """One empirical distribution of eps_out: the finite values, over ``total`` inputs."""

    label: str
    color: int  # the eps_in's position
    run: int  # the run's position: its line style
    values: Sequence[float]
    total: int


@dataclass(frozen=True)
class Distribution:
    """One panel of the distribution figure (one sigma)."""

    title: str
    steps: Sequence[Step]


def distribution_figure(panels: Sequence[Distribution], title: str) -> Any:
    """The empirical distribution of eps_out, a panel per sigma: the fraction of inputs
    certified within each value (inputs not certified count in the denominator, so a curve ends
    at the certified share). One title: the panel's own joins it when there is one panel. The
    legend sits beside the panels, covering none of them."""
    plt = pyplot()
    width = 4.6 * len(panels) + 2.4  # and the legend beside the panels
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 3.8), squeeze=False)
    colors = _colors(plt)
    for ax, panel in zip(axes[0], panels, strict=True):
        for step in panel.steps:
            values = np.sort(np.asarray([v for v in step.values if math.isfinite(v)]))
            if values.size == 0 or step.total == 0:
                continue
            ax.step(
                values,
                np.arange(1, values.size + 1) / step.total,
                where="post",
                linestyle=RUN_STYLES[step.run % len(RUN_STYLES)][0],
                color=colors[step.color % len(colors)],
                label=step.label,
            )
        ax.set_title(panel.title if len(panels) > 1 else f"{title}, {panel.title}")
        ax.set_xlabel("eps_out")
        ax.set_ylabel("fraction of inputs certified within")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    if len(panels) > 1:
        fig.suptitle(title)
    entries: dict[str, Any] = {}  # one legend for every panel, in the order first seen
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        axes[0][-1].legend(
            list(entries.values()), list(entries), fontsize=7, handlelength=4,
            loc="upper left", bbox_to_anchor=(1.02, 1.0),
        )  # fmt: skip
    fig.tight_layout()
    return fig
