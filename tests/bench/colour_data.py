"""A labelled folder with known answers, and ONNX 'models' whose predictions follow from it.

Images are solid red, green or blue; the pool-linear graph with an identity weight predicts
the brightest channel, so class k (folders sorted: 0_red, 1_green, 2_blue) is channel k.
One green image sits in 0_red: the correct model scores exactly 6 of 7.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from spartan_deploy.model import DataConfig, ResizeRule
from tests.runtime.onnx_models import make_pool_linear_onnx

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
# (folder, colour of each image in it)
LAYOUT = {"0_red": ["red", "red", "green"], "1_green": ["green", "green"],
          "2_blue": ["blue", "blue"]}
COUNT = sum(len(v) for v in LAYOUT.values())
CORRECT = 6
DATA_CONFIG = DataConfig(input_size=32, resize_size=32, resize_rule=ResizeRule.STRETCH,
                         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
SWAP_GREEN_BLUE = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], np.float32)


def write_colour_folder(root: Path) -> Path:
    for folder, colours in LAYOUT.items():
        (root / folder).mkdir(parents=True)
        for i, colour in enumerate(colours):
            Image.new("RGB", (8, 8), COLOURS[colour]).save(root / folder / f"{i}.png")
    return root


def write_flat_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    for i, colour in enumerate(COLOURS.values()):
        Image.new("RGB", (8, 8), colour).save(root / f"{i}.png")
    return root


def write_model(path: Path, weight: np.ndarray, quantized: bool = False,
                manifest: bool = True) -> Path:
    """The pool-linear ONNX with a manifest recording its preprocessing, as export writes."""
    make_pool_linear_onnx(path, weight, quantized=quantized)
    if manifest:
        from spartan_deploy.precision import Precision

        from ..manifests import record
        record(path, Precision.INT8 if quantized else Precision.FP32,
               data_config=DATA_CONFIG.to_dict())
    return path
