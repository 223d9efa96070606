"""Small hand-built ONNX files for runner/bench/eval tests: fast to make, outputs in closed form.

Imported by tests/bench and tests/report too (``from tests.runtime.onnx_models import ...``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_pool_linear_onnx(path: Path, weight: np.ndarray, size: int | str = "H",
                          quantized: bool = False) -> Path:
    """logits = mean over H, W of the input, times ``weight`` (3, classes).

    ``quantized`` routes the weight through QuantizeLinear/DequantizeLinear, as an INT8 Q/DQ
    graph does. A string ``size`` leaves H and W dynamic.
    """
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"])]
    inits = [numpy_helper.from_array(weight.astype(np.float32), "W")]
    w_name = "W"
    if quantized:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "zero")]
        nodes += [helper.make_node("QuantizeLinear", ["W", "scale", "zero"], ["Wq"]),
                  helper.make_node("DequantizeLinear", ["Wq", "scale", "zero"], ["Wdq"])]
        w_name = "Wdq"
    nodes.append(helper.make_node("MatMul", ["flat", w_name], ["logits"]))
    hw = size if isinstance(size, int) else "W"
    graph = helper.make_graph(
        nodes, "pool_linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, hw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch", weight.shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def pool_weight(classes: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((3, classes)).astype(np.float32)


def reference_logits(images: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """What the pool-linear graph computes, in numpy."""
    return images.mean(axis=(2, 3)) @ weight
