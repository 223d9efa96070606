"""Turn one decoded image into the float32 CHW array a model expects (its data config)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from spartan_deploy.model.config import DataConfig, ResizeRule

# One interpolation everywhere, so a digit read from the bundled array and the same digit
# read back from a PNG in calib/ give identical inputs.
RESAMPLE = Image.Resampling.BILINEAR


def resize(image: Image.Image, config: DataConfig) -> Image.Image:
    """Apply the resize rule: stretch to a square, or shorter side then centre crop."""
    size = config.input_size
    if config.resize_rule is ResizeRule.STRETCH:
        return image.resize((size, size), RESAMPLE) if image.size != (size, size) else image
    width, height = image.size
    scale = config.resize_size / min(width, height)
    new_w = max(size, round(width * scale))
    new_h = max(size, round(height * scale))
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), RESAMPLE)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


# Single-channel modes wider than 8 bits. Converting them with Pillow's convert("L") clips
# every value above 255 (a 16-bit image turns almost white), so they are scaled here.
_WIDE_GREY_MAX = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0,
                  "I": 65535.0}  # "I": Pillow's 32-bit mode, which 16-bit PNGs may decode to


def to_array(image: Image.Image, config: DataConfig) -> np.ndarray:
    """Resize, make three channels, scale to [0, 1] and normalise: float32 (3, H, W)."""
    if image.mode in _WIDE_GREY_MAX:
        pixels = _wide_grey(image, config)
    else:
        mode = "L" if config.grayscale else "RGB"
        if image.mode != mode:
            # Palette/alpha images go through RGB(A) first so transparency does not turn
            # black.
            image = image.convert("RGB").convert(mode) if image.mode in ("P", "PA", "LA") \
                else image.convert(mode)
        image = resize(image, config)
        pixels = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
    if pixels.ndim == 2:  # grey: the model still takes three channels
        pixels = np.repeat(pixels[None], 3, axis=0)
    else:
        pixels = pixels.transpose(2, 0, 1)
    mean = np.asarray(config.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(config.std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


def _wide_grey(image: Image.Image, config: DataConfig) -> np.ndarray:
    """A 16-bit (or 32-bit integer) grey image as float pixels in [0, 1], resized in float
    (mode F), so its full depth is kept: 65535 is white, as 255 is in 8 bits."""
    full_scale = _WIDE_GREY_MAX[image.mode]
    values = np.asarray(image, dtype=np.float64)
    scaled = np.clip(values / full_scale, 0.0, 1.0).astype(np.float32)
    # Resized on the 0..255 scale an 8-bit image has, so both go through the same filter.
    resized = resize(Image.fromarray(scaled * np.float32(255.0)), config)  # float32: mode F
    return np.asarray(resized, dtype=np.float32) * (1.0 / 255.0)
