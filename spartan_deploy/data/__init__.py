"""Datasets: the built-in ``digits`` and image folders, streamed as preprocessed batches."""

from __future__ import annotations

from spartan_deploy.data.dataset import Dataset, default_workers, load_calibration, open_dataset
from spartan_deploy.data.digits import (
    DIGITS_CLASSES,
    DIGITS_DATA_CONFIG,
    DIGITS_NAME,
    digit_image,
    digit_pixels,
    digits_labels,
    digits_split,
)
from spartan_deploy.data.folder import IMAGE_SUFFIXES, list_folder
from spartan_deploy.data.preprocess import to_array

__all__ = [
    "DIGITS_CLASSES", "DIGITS_DATA_CONFIG", "DIGITS_NAME", "IMAGE_SUFFIXES", "Dataset",
    "default_workers", "digit_image", "digit_pixels", "digits_labels", "digits_split",
    "list_folder", "load_calibration", "open_dataset", "to_array",
]
