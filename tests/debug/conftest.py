"""Debug-test fixtures: the official tiny SpaRTAN with its layer scales raised to 0.3 (the
official 1e-5 makes every block nearly the identity, so no block could lose anything),
exported at 32x32 with digits preprocessing, and its reduced-precision graphs: INT8 Q/DQ for
both targets and FP16 (AutoCast). Built once per session; tests that edit copy first.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import write_digit_pngs

LAYER_SCALE = 0.3
CALIB_IMAGES = 20
LIMIT = 48  # images per debug run: enough for stable SQNR, quick on 2 cores


@pytest.fixture(scope="session")
def scaled_tiny(tiny_model):
    import torch

    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("scale_1", "scale_2")):
                param.fill_(LAYER_SCALE)
    return model.eval()


@pytest.fixture(scope="session")
def debug_calib(tmp_path_factory) -> Path:
    return write_digit_pngs(tmp_path_factory.mktemp("debug-calib"), CALIB_IMAGES)


@pytest.fixture(scope="session")
def artefacts(scaled_tiny, debug_calib, tmp_path_factory) -> Path:
    """A run folder: model.onnx, model.int8.trt.onnx, model.int8.cpu.onnx, model.fp16.onnx
    and model.int8.fp16.onnx (the TensorRT Q/DQ graph with the rest in FP16)."""
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.engine.precision import convert_to_fp16
    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import LoadedModel
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    folder = tmp_path_factory.mktemp("debug-run")
    source = folder / "model.onnx"
    export_onnx(LoadedModel("tiny-scaled", scaled_tiny, DIGITS_DATA_CONFIG), source,
                ExportOptions(img_size=32))
    for target in (Target.TENSORRT, Target.CPU):
        if target is Target.TENSORRT:
            pytest.importorskip("modelopt.onnx.quantization")
        quantize_onnx(source, debug_calib, QuantizeOptions(target=target, method="max",
                                                           holdout=4),
                      folder / f"model.int8.{'trt' if target is Target.TENSORRT else 'cpu'}.onnx")
    onnx.save(convert_to_fp16(onnx.load(source)).model, folder / "model.fp16.onnx")
    qdq = onnx.load(folder / "model.int8.trt.onnx")
    onnx.save(convert_to_fp16(qdq).model, folder / "model.int8.fp16.onnx")
    return folder


@pytest.fixture
def run_copy(artefacts, tmp_path) -> Path:
    """A private copy of the run folder (graphs and manifests) a test may write into."""
    for item in artefacts.iterdir():
        if item.is_file():  # not the calibration cache folder
            shutil.copy(item, tmp_path / item.name)
    return tmp_path


def activation_scale_feeding(model: onnx.ModelProto, nodes: set[str]) -> str:
    """The scale initializer of an activation Q/DQ made and read inside ``nodes``."""
    from spartan_deploy.onnx_graph import GraphIndex

    index = GraphIndex(model)
    for node in index.nodes:
        if node.op_type != "QuantizeLinear" or index.is_constant(node.input[0]):
            continue
        maker = index.producer.get(node.input[0])
        readers = [r for dq in index.consumers[node.output[0]]
                   for r in index.consumers[dq.output[0]]]
        if maker is not None and maker.name in nodes and readers \
                and all(r.name in nodes for r in readers):
            return node.input[1]
    raise AssertionError("no activation Q/DQ inside the unit")


def break_scale(path: Path, unit: str, factor: float, out: Path) -> Path:
    """Plant a fault: multiply one activation scale inside ``unit`` by ``factor``."""
    from spartan_deploy.debug.blocks import find_block_map

    model = onnx.load(path)
    block_map, _ = find_block_map(model)
    name = activation_scale_feeding(model, set(block_map.nodes[unit]))
    init = next(i for i in model.graph.initializer if i.name == name)
    values = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array((values * factor).astype(values.dtype), name))
    onnx.save(model, out)
    return out


def rename_everything(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with every node and tensor renamed to opaque names (as another
    exporter would write them): no block map can be read from it."""
    import hashlib

    def opaque(name: str) -> str:
        return name if name in ("input", "logits", "") else \
            "t" + hashlib.sha1(name.encode()).hexdigest()[:10]

    renamed = onnx.ModelProto.FromString(model.SerializeToString())
    for i, node in enumerate(renamed.graph.node):
        node.name = f"n{i}"
        node.input[:] = [opaque(t) for t in node.input]
        node.output[:] = [opaque(t) for t in node.output]
    for init in renamed.graph.initializer:
        init.name = opaque(init.name)
    for value in [*renamed.graph.input, *renamed.graph.output, *renamed.graph.value_info]:
        value.name = opaque(value.name)
    return renamed


def other_weights(path: Path, out: Path, seed: int = 1) -> Path:
    """The same graph with every float weight replaced by random values (another model)."""
    rng = np.random.default_rng(seed)
    model = onnx.load(path)
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype == np.float32 and values.size >= 16:
            fresh = rng.standard_normal(values.shape).astype(np.float32) * values.std()
            init.CopyFrom(numpy_helper.from_array(fresh, init.name))
    onnx.save(model, out)
    return out
