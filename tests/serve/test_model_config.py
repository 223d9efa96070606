"""config.pbtxt rendering and checking against Triton's own ModelConfig schema."""

from __future__ import annotations

import pytest

from tests.serve.conftest import require_module

require_module("tritonclient.grpc.model_config_pb2")

from spartan_deploy.serve.errors import ServeError  # noqa: E402
from spartan_deploy.serve.model_config import (  # noqa: E402
    DataType, DynamicBatching, EnsembleStep, InstanceGroup, InstanceKind, ModelConfigSpec,
    TensorRTAccelerator, TensorSpec, parse_config, render)


def _spec(**changes) -> ModelConfigSpec:
    base = dict(name="m", max_batch_size=8,
                inputs=(TensorSpec("input", DataType.FP32, (3, 32, 32)),),
                outputs=(TensorSpec("logits", DataType.FP32, (10,), "labels.txt"),),
                platform="onnxruntime_onnx", batching=DynamicBatching((4, 8), 250),
                instances=InstanceGroup(2, InstanceKind.GPU),
                accelerator=TensorRTAccelerator("FP16"), parameters=(("k", 'a "quoted" v'),),
                comments=("made by a test",))
    base.update(changes)
    return ModelConfigSpec(**base)


def test_every_field_survives_triton_schema_parse():
    message = parse_config(render(_spec()), "m/config.pbtxt")
    assert message.name == "m" and message.platform == "onnxruntime_onnx"
    assert message.max_batch_size == 8
    assert list(message.input[0].dims) == [3, 32, 32]
    assert message.output[0].label_filename == "labels.txt"
    assert list(message.dynamic_batching.preferred_batch_size) == [4, 8]
    assert message.dynamic_batching.max_queue_delay_microseconds == 250
    assert message.instance_group[0].count == 2
    assert message.instance_group[0].kind == message.instance_group[0].KIND_GPU
    accel = message.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP16"
    assert message.parameters["k"].string_value == 'a "quoted" v'


def test_ensemble_steps_parse():
    step = EnsembleStep("pre", (("IMAGE", "IMAGE"),), (("input", "pixels"),))
    spec = _spec(platform="ensemble", accelerator=None, batching=None, instances=None,
                 inputs=(TensorSpec("IMAGE", DataType.STRING, (1,)),), steps=(step,))
    message = parse_config(render(spec), "e")
    assert message.ensemble_scheduling.step[0].input_map["IMAGE"] == "IMAGE"
    assert message.ensemble_scheduling.step[0].output_map["input"] == "pixels"


def test_unknown_field_is_refused_by_the_schema():
    with pytest.raises(ServeError, match="ModelConfig"):
        parse_config(render(_spec()) + "no_such_field: 3\n", "m/config.pbtxt")


@pytest.mark.parametrize("spec, words", [
    (_spec(max_batch_size=0), "dynamic_batching needs max_batch_size"),
    (_spec(batching=DynamicBatching((16,), 0)), "preferred batch sizes [16]"),
    (_spec(inputs=(TensorSpec("input", DataType.FP32, (3, 0, 32)),)), "dims"),
    (_spec(backend="python"), "exactly one of platform and backend"),
])
def test_configs_triton_would_not_load_are_refused(spec, words):
    with pytest.raises(ServeError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_config(render(spec), "m/config.pbtxt")
