"""hjepa-watch: a health monitor for H-JEPA self-supervised training runs.

The daemon side (this package without :mod:`hjepa_watch.training`) needs no torch.
"""

from hjepa_watch.events.decode import ScalarPoint
from hjepa_watch.events.tailer import IngestStats, Notice, ScalarBatch, Tailer

__version__ = "0.1.0"

__all__ = ["IngestStats", "Notice", "ScalarBatch", "ScalarPoint", "Tailer", "__version__"]
