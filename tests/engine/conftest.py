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
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from spartan_deploy.manifest import (
        ArtefactKind, Manifest, parent_of, read_manifest, save_artefact)
    from spartan_deploy.precision import Precision

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"input": rng.standard_normal((2, 3, 32, 32),
                                                               dtype=np.float32)}] * 2)

        def get_next(self):
            return next(self.batches, None)

    import shutil

    folder = tmp_path_factory.mktemp("tiny-qdq")
    for name in ("model.onnx", "model.onnx.json"):  # the FP32 parent beside its Q/DQ child
        shutil.copy(tiny_onnx_dir / name, folder / name)
    fp32 = folder / "model.onnx"
    out = folder / "model.int8.trt.onnx"
    staged = folder / "staged.onnx"
    quantize_static(str(fp32), str(staged), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv"], per_channel=True)
    source = read_manifest(fp32)
    record = Manifest(kind=ArtefactKind.ONNX, stage="quantize", precision=Precision.INT8,
                      parent=parent_of(fp32, out), checkpoint_sha256=source.checkpoint_sha256,
                      model="tiny", data_config=source.data_config, io=source.io)
    save_artefact(out, lambda tmp: tmp.write_bytes(staged.read_bytes()), record)
    staged.unlink()
    return folder
