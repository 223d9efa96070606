"""Pipeline fixtures: a tiny digits checkpoint and a 24-image calibration folder."""

from __future__ import annotations

import shutil

import pytest
import torch


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """(root folder, tiny SpaRTAN checkpoint for digits, 24-image calibration folder)."""
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.model import ModelConfig, SpaRTAN, save_checkpoint
    from spartan_deploy.paths import bundled_calib_dir

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pipeline")
    model = SpaRTAN(ModelConfig(layer_depths=(1, 1, 1, 1), dims=(32, 64, 128), init_dim=16,
                                num_classes=10))
    weights = save_checkpoint(root / "tiny.pt", model.eval(), DIGITS_DATA_CONFIG)
    calib = root / "calib"
    calib.mkdir()
    for png in sorted(bundled_calib_dir().glob("*.png"))[:24]:
        shutil.copy(png, calib / png.name)
    return root, weights, calib
