"""Weakly typed builds for TensorRT 10.0-10.11: the only code using precision builder flags.

TensorRT 11 removed ``BuilderFlag.FP16/INT8``, ``OBEY_PRECISION_CONSTRAINTS``,
``ILayer.precision`` and ``ILayer.set_output_type`` (its migration guide: strong typing is
always enforced). They are kept in this module alone, which :mod:`spartan_deploy.engine.trt`
imports only when the running TensorRT is older than 10.12, so the API check can hold every
other TensorRT module to the 11.x names while mypy still checks this one against the 10.x
stubs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spartan_deploy.precision import Precision

if TYPE_CHECKING:
    import tensorrt as trt


def weak_typing(network: trt.INetworkDefinition, config: trt.IBuilderConfig,
                precision: Precision) -> None:
    """Enable the reduced precisions and pin the graph's FP32 layers.

    Only FP16 graphs are pinned: in a Q/DQ graph a precision constraint on a layer next to a
    DequantizeLinear could stop TensorRT from fusing it into an INT8 kernel.
    """
    import tensorrt as trt

    if precision in (Precision.FP16, Precision.INT8_FP16):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision.has_int8:
        config.set_flag(trt.BuilderFlag.INT8)
    if precision is not Precision.FP16:
        return
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if layer.type != trt.LayerType.CAST and outputs and \
                all(o.dtype == trt.float32 for o in outputs):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
