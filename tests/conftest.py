"""Shared fixtures and the gpu/tensorrt markers' skip logic."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
GOLDEN = Path(__file__).resolve().parent / "golden"


def write_digit_pngs(folder: Path, count: int) -> Path:
    """The first ``count`` digits of the train split as PNGs in ``folder`` (as calib/ holds
    them)."""
    from spartan_deploy.data import digit_image, digits_split

    folder.mkdir(parents=True, exist_ok=True)
    for index in digits_split("train")[:count]:
        digit_image(int(index)).save(folder / f"digit_{int(index):04d}.png")
    return folder


def tiny_digits_run_inputs(root: Path, calib_images: int) -> tuple[Path, Path]:
    """(seeded tiny SpaRTAN checkpoint for digits, folder of ``calib_images`` bundled
    calibration PNGs), both written under ``root``."""
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.model import ModelConfig, SpaRTAN, save_checkpoint
    from spartan_deploy.paths import bundled_calib_dir

    torch.manual_seed(0)
    model = SpaRTAN(ModelConfig(layer_depths=(1, 1, 1, 1), dims=(32, 64, 128), init_dim=16,
                                num_classes=10))
    weights = save_checkpoint(root / "tiny.pt", model.eval(), DIGITS_DATA_CONFIG)
    calib = root / "calib"
    calib.mkdir()
    for png in sorted(bundled_calib_dir().glob("*.png"))[:calib_images]:
        shutil.copy(png, calib / png.name)
    return weights, calib


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Not find_spec("tensorrt"): the stubs package installs an importable empty folder.
    from spartan_deploy.engine.trt import import_tensorrt

    has_gpu = torch.cuda.is_available()
    has_trt = import_tensorrt() is not None
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU on this machine"))
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="TensorRT is not installed "
                                                    "(pip install 'spartan-deploy[tensorrt]')"))


@pytest.fixture(scope="session")
def official_fixture() -> dict:
    """The official tiny model's state dict, input and logits (shared/, else tests/golden)."""
    for path in (SHARED_FIXTURES / "official_tiny_parity.pt", GOLDEN / "official_tiny_parity.pt"):
        if path.is_file():
            return torch.load(path, weights_only=True)
    pytest.skip("official fixture absent: ../shared/fixtures is not beside this clone and "
                "tests/golden/official_tiny_parity.pt is missing")


@pytest.fixture(scope="session")
def tiny_config(official_fixture):
    from spartan_deploy.model import ModelConfig
    cfg = official_fixture["config"]
    return ModelConfig(layer_depths=tuple(cfg["layer_depths"]),
                       expand_ratios=tuple(cfg["expand_ratios"]), dims=tuple(cfg["dims"]),
                       init_dim=cfg["init_dim"], num_classes=official_fixture["num_classes"])


@pytest.fixture(scope="session")
def tiny_model(official_fixture, tiny_config):
    """Our model built from the official tiny config with the official weights, eval mode."""
    from spartan_deploy.model import SpaRTAN
    model = SpaRTAN(tiny_config)
    model.load_state_dict(official_fixture["state_dict"])
    return model.eval()


@pytest.fixture(scope="session")
def tiny_onnx_dir(tmp_path_factory, tiny_model) -> Path:
    """The official tiny model exported once at 32x32 with digits preprocessing."""
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import LoadedModel

    folder = tmp_path_factory.mktemp("tiny-onnx")
    export_onnx(LoadedModel("tiny", tiny_model, DIGITS_DATA_CONFIG), folder / "model.onnx",
                ExportOptions(img_size=32))
    return folder


@pytest.fixture
def tiny_onnx(tiny_onnx_dir, tmp_path) -> Path:
    """A private copy (with its manifest) that a test may write beside."""
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(tiny_onnx_dir / name, tmp_path / name)
    return tmp_path / "model.onnx"
