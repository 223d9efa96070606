"""Datasets: the built-in ``digits`` and image folders, streamed as preprocessed batches."""

from __future__ import annotations

from spartan_deploy.data.calib import DEFAULT_CALIB_DIR, check_calibration
from spartan_deploy.data.dataset import (
    Dataset,
    default_workers,
    is_builtin,
    load_calibration,
    open_dataset,
)
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
    "DEFAULT_CALIB_DIR", "DIGITS_CLASSES", "DIGITS_DATA_CONFIG", "DIGITS_NAME", "IMAGE_SUFFIXES",
    "Dataset", "check_calibration", "default_workers", "is_builtin", "digit_image", "digit_pixels", "digits_labels", "digits_split",
    "list_folder", "load_calibration", "open_dataset", "to_array",
]
