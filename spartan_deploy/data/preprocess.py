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


def to_array(image: Image.Image, config: DataConfig) -> np.ndarray:
    """Resize, make three channels, scale to [0, 1] and normalise: float32 (3, H, W)."""
    mode = "L" if config.grayscale else "RGB"
    if image.mode != mode:
        # Palette/alpha images go through RGB(A) first so transparency does not turn black.
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
