"""centersmooth: certified robustness for models with structured outputs (center smoothing)."""

from .metrics import Metric, available_metrics, get_metric
from .smoothing import CenterSmoothing, Certificate, Prediction

__version__ = "0.1.0"

__all__ = [
    "CenterSmoothing",
    "Certificate",
    "Metric",
    "Prediction",
    "__version__",
    "available_metrics",
    "get_metric",
]
