"""centersmooth: certified robustness for models with structured outputs (center smoothing).

The public names are imported on first use, so that ``import centersmooth.cli`` (and the
command's ``--help``) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "AbstentionRiskWarning": "planning",
    "CenterSmoothing": "smoothing",
    "Certificate": "certificate",
    "Prediction": "certificate",
    "DistanceCheckError": "metrics.checks",
    "FunctionMetric": "metrics",
    "SlowCenterSearchWarning": "center",
    "UncertifiableRadiusWarning": "certificate",
    "Metric": "metrics",
    "available_metrics": "metrics",
    "get_metric": "metrics",
}

if TYPE_CHECKING:
    from .center import SlowCenterSearchWarning
    from .certificate import Certificate, Prediction, UncertifiableRadiusWarning
    from .metrics import FunctionMetric, Metric, available_metrics, get_metric
    from .metrics.checks import DistanceCheckError
    from .planning import AbstentionRiskWarning
    from .smoothing import CenterSmoothing


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'centersmooth' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})  # a name already imported is in both


__all__ = [
    "AbstentionRiskWarning",
    "CenterSmoothing",
    "Certificate",
    "DistanceCheckError",
    "FunctionMetric",
    "Metric",
    "Prediction",
    "SlowCenterSearchWarning",
    "UncertifiableRadiusWarning",
    "__version__",
    "available_metrics",
    "get_metric",
]
