"""Image folders built from real digits, in every supported format, plus broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spartan_deploy.data import digit_pixels, digits_labels, digits_split

FORMATS = ("png", "jpg", "bmp", "webp")


def write_digit(path: Path, index: int) -> Path:
    """Digit ``index`` as an RGB file (upsampled so JPEG/WebP keep the shape)."""
    grey = Image.fromarray(digit_pixels(index)).resize((24, 24), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    grey.convert("RGB").save(path)
    return path


def make_class_folder(root: Path, split: str, per_class: int, classes: int = 3) -> Path:
    indices = digits_split(split)
    labels = digits_labels()[indices]
    for cls in range(classes):
        chosen = indices[labels == cls][:per_class]
        for n, index in enumerate(chosen.tolist()):
            write_digit(root / str(cls) / f"img{n}.{FORMATS[n % len(FORMATS)]}", index)
    return root


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """train/ and val/ sub-folders, each with class folders 0, 1, 2 of digits."""
    make_class_folder(tmp_path / "train", "train", per_class=6)
    make_class_folder(tmp_path / "val", "test", per_class=3)
    return tmp_path


@pytest.fixture
def flat_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "flat"
    for n, index in enumerate(digits_split("test")[:5].tolist()):
        write_digit(folder / f"{n}.{FORMATS[n % len(FORMATS)]}", index)
    (folder / "notes.txt").write_text("not an image")
    return folder


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image" * 10)
    return path


def truncated(path: Path, index: int = 0) -> Path:
    """A PNG whose header reads fine but whose pixel data is cut off."""
    full = write_digit(path, index)
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])
    return full


def as_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.round(array * 255), 0, 255).astype(np.uint8)
