"""Engine-test fixtures: the official tiny SpaRTAN exported once at 32x32 (digits preprocessing).

The tiny model keeps AutoCast and the accuracy measurement to a few seconds, while having every
part the fragile-part finder looks for (one-group norms, argmax, wave modulation, SE gates).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_fp16(tiny_onnx_dir):
    """The tiny graph converted with the default policy (shared: AutoCast takes seconds)."""
    import onnx

    from spartan_deploy.engine import convert_to_fp16

    return convert_to_fp16(onnx.load(tiny_onnx_dir / "model.onnx"))


@pytest.fixture(scope="session")
def tiny_qdq_dir(tiny_onnx_dir, tmp_path_factory) -> Path:
    """A Q/DQ graph of the tiny model from ONNX Runtime's static quantizer (independent of the
    project's quantize stage, so tests of it check only what the engine stage does), with a
    manifest naming its FP32 source the way the quantize stage's manifests do."""
    import json

    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from spartan_deploy._io import sha256_file

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"input": rng.standard_normal((2, 3, 32, 32),
                                                               dtype=np.float32)}] * 2)

        def get_next(self):
            return next(self.batches, None)

    folder = tmp_path_factory.mktemp("tiny-qdq")
    fp32 = tiny_onnx_dir / "model.onnx"
    out = folder / "model.int8.trt.onnx"
    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"], per_channel=True)
    source_manifest = json.loads((tiny_onnx_dir / "model.onnx.json").read_text())
    manifest = {"model": "tiny", "data_config": source_manifest["data_config"],
                "source": {"onnx": str(fp32), "onnx_sha256": sha256_file(fp32)}}
    (folder / "model.int8.trt.onnx.json").write_text(json.dumps(manifest))
    return folder
