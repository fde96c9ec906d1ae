"""matplotlib, imported when a figure is drawn: it is an optional dependency (``plots`` extra)."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, or an ImportError that says how to
    install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "drawing figures needs matplotlib: pip install 'centersmooth[plots]' "
            "(or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
