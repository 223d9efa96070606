"""Training: ``spartan train`` and the accuracy functions other stages build on."""

from __future__ import annotations

from spartan_deploy.train.evaluate import Accuracy, evaluate_model, evaluate_predictions
from spartan_deploy.train.options import Augment, EpochStats, TrainOptions, TrainResult
from spartan_deploy.train.progress import RichProgress, SilentProgress, TrainProgress
from spartan_deploy.train.trainer import train

__all__ = [
    "Accuracy", "Augment", "EpochStats", "RichProgress", "SilentProgress", "TrainOptions",
    "TrainProgress", "TrainResult", "evaluate_model", "evaluate_predictions", "train",
]
