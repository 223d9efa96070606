"""Training: ``spartan train`` and the accuracy functions other stages build on.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Accuracy": "evaluate", "evaluate_model": "evaluate", "evaluate_predictions": "evaluate",
    "Augment": "options", "EpochStats": "options", "TrainOptions": "options",
    "TrainResult": "options",
    "RichProgress": "progress", "SilentProgress": "progress", "TrainProgress": "progress",
    "train": "trainer",
})
