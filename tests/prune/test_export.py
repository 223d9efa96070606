"""A pruned checkpoint goes through export (parity) and quantize like any other."""

from __future__ import annotations

import numpy as np
import pytest

from spartan_deploy.data import DIGITS_DATA_CONFIG
from spartan_deploy.model import LoadedModel, load_model
from spartan_deploy.prune import PruneOptions, Sparsity, prune


@pytest.fixture
def pruned_checkpoint(lively_tiny, tmp_path):
    loaded = LoadedModel("tiny", lively_tiny, DIGITS_DATA_CONFIG, None)
    out = tmp_path / "pruned.pt"
    prune(loaded, PruneOptions(ratio=0.4, sparsity=Sparsity.TWO_FOUR), out)
    return out


def test_pruned_checkpoint_exports_with_parity(pruned_checkpoint, tmp_path):
    export = pytest.importorskip("spartan_deploy.export")
    loaded = load_model(weights=pruned_checkpoint)
    assert loaded.config.is_pruned
    result = export.export_onnx(loaded, tmp_path / "model.onnx",
                                export.ExportOptions(simplify=False))
    assert result.parity.max_abs_diff <= 1e-4 and result.parity.top1_agreement == 1.0
    import onnxruntime as ort
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    import torch
    with torch.no_grad():
        expected = loaded.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, atol=1e-4)


def test_pruned_export_quantizes(pruned_checkpoint, tmp_path):
    export = pytest.importorskip("spartan_deploy.export")
    quantize = pytest.importorskip("spartan_deploy.quantize")
    from PIL import Image

    from spartan_deploy.data import digit_pixels
    calib = tmp_path / "calib"
    calib.mkdir()
    for index in range(16):
        Image.fromarray(digit_pixels(index)).save(calib / f"{index:03d}.png")
    onnx_path = export.export_onnx(load_model(weights=pruned_checkpoint),
                                   tmp_path / "model.onnx").path
    options = quantize.QuantizeOptions(target=quantize.Target.CPU)
    result = quantize.quantize_onnx(onnx_path, calib, options, output=tmp_path / "q.onnx")
    assert result.path.is_file() and result.quantized_nodes
    assert result.qdq["dequantize_linear"] > 0
    assert result.holdout.top1_agreement >= 0.5  # the INT8 graph still follows the float one
