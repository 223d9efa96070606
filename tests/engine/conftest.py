"""Engine-test fixtures: the official tiny SpaRTAN exported once at 32x32 (digits preprocessing).

The tiny model keeps AutoCast and the accuracy measurement to a few seconds, while having every
part the fragile-part finder looks for (one-group norms, argmax, wave modulation, SE gates).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_onnx_dir(tmp_path_factory, tiny_model) -> Path:
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import LoadedModel

    folder = tmp_path_factory.mktemp("tiny-onnx")
    export_onnx(LoadedModel("tiny", tiny_model, DIGITS_DATA_CONFIG), folder / "model.onnx",
                ExportOptions(img_size=32))
    return folder


@pytest.fixture
def tiny_onnx(tiny_onnx_dir, tmp_path) -> Path:
    """A private copy (with its manifest) that a test may build beside."""
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(tiny_onnx_dir / name, tmp_path / name)
    return tmp_path / "model.onnx"


@pytest.fixture(scope="session")
def tiny_fp16(tiny_onnx_dir):
    """The tiny graph converted with the default policy (shared: AutoCast takes seconds)."""
    import onnx

    from spartan_deploy.engine import convert_to_fp16

    return convert_to_fp16(onnx.load(tiny_onnx_dir / "model.onnx"))
