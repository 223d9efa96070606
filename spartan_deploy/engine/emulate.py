"""An FP32 graph that rounds like the FP16 graph would on a GPU.

Why: ONNX Runtime's CPU provider has FP16 kernels for very few operators (on x86 only
data movement such as Concat, Reshape, Unsqueeze); for every other FP16 node it silently
inserts Casts and computes in FP32, so an FP16 graph run on the CPU mostly measures the
rounding of the weights, not of the activations. The emulation graph instead computes every
node in FP32 and rounds each tensor that the FP16 graph stores in FP16 (Cast to FP16 and
back), which is how a GPU FP16 kernel behaves (FP32 accumulation, FP16 storage), overflow to
infinity included. Q/DQ nodes stay and run as fake quantization.

Run it with graph optimisations disabled: an optimiser may drop the Cast pairs.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT
_SUFFIX = "__fp32"


def emulate_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The emulation graph of a (mixed) FP16 model; an FP32 model comes back equivalent."""
    typed = onnx.shape_inference.infer_shapes(model)
    types = _elem_types(typed)
    graph = typed.graph
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        nodes.extend(_emulate_node(node, types))
    inits = [_to_f32_tensor(t) for t in graph.initializer]
    inputs = [_to_f32_value(v) for v in graph.input]
    outputs = [_to_f32_value(v) for v in graph.output]
    new_graph = helper.make_graph(nodes, graph.name + "_fp16_emulation", inputs, outputs, inits)
    emulated = helper.make_model(new_graph, opset_imports=list(model.opset_import),
                                 ir_version=model.ir_version)
    onnx.checker.check_model(emulated)
    return emulated


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def _emulate_node(node: onnx.NodeProto, types: dict[str, int]) -> list[onnx.NodeProto]:
    if node.op_type == "Cast":
        return _emulate_cast(node, types)
    node = _f32_attributes(node)
    fp16_outputs = [out for out in node.output if types.get(out) == F16]
    if not fp16_outputs:
        return [node]
    renamed = onnx.NodeProto()
    renamed.CopyFrom(node)
    del renamed.output[:]
    renamed.output.extend(out + _SUFFIX if out in fp16_outputs else out for out in node.output)
    rounding = [n for out in fp16_outputs for n in _round_f16(out + _SUFFIX, out)]
    return [renamed, *rounding]


def _emulate_cast(node: onnx.NodeProto, types: dict[str, int]) -> list[onnx.NodeProto]:
    to = next(a.i for a in node.attribute if a.name == "to")
    source = types.get(node.input[0])
    if to == F16:
        return _round_f16(node.input[0], node.output[0])
    if to == F32 and source == F16:
        # The value is already a rounded FP32 here: the upcast is exact.
        return [helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)]
    return [node]


def _round_f16(source: str, target: str) -> list[onnx.NodeProto]:
    """Round an FP32 tensor to the nearest FP16 value (kept in an FP32 tensor)."""
    half = f"{target}__f16"
    # Named after the tensor, which is unique (node names may be empty).
    return [helper.make_node("Cast", [source], [half], to=F16, name=f"{target}__to_f16"),
            helper.make_node("Cast", [half], [target], to=F32, name=f"{target}__to_f32")]


def _f32_attributes(node: onnx.NodeProto) -> onnx.NodeProto:
    """Tensor attributes (Constant, ConstantOfShape) that hold FP16 become exact FP32."""
    if not any(a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F16
               for a in node.attribute):
        return node
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    for attr in copy.attribute:
        if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == F16:
            attr.t.CopyFrom(_to_f32_tensor(attr.t))
    return copy


def _to_f32_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    if tensor.data_type != F16:
        return tensor
    array = numpy_helper.to_array(tensor).astype("float32")  # every FP16 value is exact in FP32
    return numpy_helper.from_array(array, tensor.name)


def _to_f32_value(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    if value.type.tensor_type.elem_type != F16:
        return value
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    copy.type.tensor_type.elem_type = F32
    return copy
