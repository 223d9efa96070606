"""The built-in ``digits`` dataset: UCI handwritten digits shipped as a small array file.

1,797 grey 8x8 images (pixel counts 0..16), 10 classes, with a fixed stratified train/test
split stored in the file (see scripts/extract_digits.py and DIGITS_LICENSE.md).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from spartan_deploy.errors import DataError
from spartan_deploy.model.config import DataConfig, ResizeRule

DIGITS_NAME = "digits"
DIGITS_CLASSES = tuple(str(d) for d in range(10))
DIGITS_SPLITS = ("train", "test", "all")
_MAX_COUNT = 16  # the UCI images count "on" pixels in 4x4 blocks: 0..16

# Upsampled to 32x32, grey replicated to three channels. Mean/std are those of the train
# split after that preprocessing (computed by scripts/extract_digits.py --stats).
DIGITS_DATA_CONFIG = DataConfig(
    input_size=32, resize_size=32, resize_rule=ResizeRule.STRETCH, grayscale=True,
    mean=(0.3052, 0.3052, 0.3052), std=(0.3232, 0.3232, 0.3232),
)


def digits_file() -> Path:
    """The shipped array file (package data, found with importlib.resources)."""
    entry = resources.files("spartan_deploy.data").joinpath("digits.npz")
    return Path(str(entry))


@functools.lru_cache(maxsize=1)
def _arrays() -> dict[str, np.ndarray]:
    try:
        with np.load(digits_file(), allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("images", "labels", "train_index",
                                                 "test_index")}
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"the bundled digits file {str(digits_file())!r} is missing or broken "
                        f"({err}); reinstall spartan-deploy") from None
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


def digits_split(split: str) -> np.ndarray:
    """Indices (into the full 1,797 images) of a split: ``train``, ``test`` or ``all``."""
    if split not in DIGITS_SPLITS:
        raise DataError(f"unknown digits split {split!r}; use one of {', '.join(DIGITS_SPLITS)}")
    arrays = _arrays()
    if split == "all":
        return np.arange(len(arrays["labels"]), dtype=np.int64)
    return arrays[f"{split}_index"].astype(np.int64)


def digits_labels() -> np.ndarray:
    return _arrays()["labels"].astype(np.int64)


def digit_pixels(index: int) -> np.ndarray:
    """Image ``index`` as uint8 grey 0..255 (8x8): the exact pixels written to calib/ PNGs."""
    counts = _arrays()["images"][index].astype(np.uint16)
    return ((counts * 255 + _MAX_COUNT // 2) // _MAX_COUNT).astype(np.uint8)


def digit_image(index: int) -> Image.Image:
    return Image.fromarray(digit_pixels(int(index)))  # 2-D uint8: mode "L"
