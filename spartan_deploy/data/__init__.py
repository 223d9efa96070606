"""Datasets: the built-in ``digits`` and image folders, streamed as preprocessed batches.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "check_calibration": "calib",
    "Dataset": "dataset", "default_workers": "dataset", "is_builtin": "dataset",
    "load_calibration": "dataset", "open_dataset": "dataset",
    "DIGITS_CLASSES": "digits", "DIGITS_DATA_CONFIG": "digits", "DIGITS_NAME": "digits",
    "digit_image": "digits", "digit_pixels": "digits", "digits_labels": "digits",
    "digits_split": "digits",
    "IMAGE_SUFFIXES": "folder", "list_folder": "folder",
    "to_array": "preprocess",
})
