"""The optional ensemble: encoded images in, top-k classes out.

``<name>-ensemble`` chains three models: ``<name>-preprocess`` (Python backend: PNG/JPEG
bytes to the float NCHW batch, following the model's data config), the classifier itself
(native backend on a GPU server, the CPU variant on the bundled server) and ``<name>-topk``
(Python backend: softmax, the k best class indices, scores and labels).
"""

from __future__ import annotations

import json
from typing import Any

from spartan_deploy.serve.model_config import (
    DataType, EnsembleStep, InstanceGroup, InstanceKind, ModelConfigSpec, TensorSpec)

IMAGE = "IMAGE"  # one encoded image per batch item (BYTES)
SCORES, CLASSES, LABELS = "SCORES", "CLASSES", "LABELS"
LOGITS = "LOGITS"
_DATA_KEYS = ("input_size", "resize_size", "resize_rule", "grayscale", "mean", "std")


def ensemble_names(name: str) -> dict[str, str]:
    return {"preprocess": f"{name}-preprocess", "topk": f"{name}-topk",
            "ensemble": f"{name}-ensemble"}


def ensemble_specs(classifier: ModelConfigSpec, data_config: dict[str, Any],
                   k: int) -> list[tuple[str, ModelConfigSpec]]:
    """(role, config) of the preprocess, top-k and ensemble models around ``classifier``."""
    names = ensemble_names(classifier.name)
    pixels, logits = classifier.inputs[0], classifier.outputs[0]
    image = TensorSpec(IMAGE, DataType.STRING, (1,))
    outputs = (TensorSpec(SCORES, DataType.FP32, (k,)), TensorSpec(CLASSES, DataType.INT64, (k,)),
               TensorSpec(LABELS, DataType.STRING, (k,)))
    cpu = InstanceGroup(1, InstanceKind.CPU)
    batch = classifier.max_batch_size
    preprocess = ModelConfigSpec(
        names["preprocess"], batch, (image,), (TensorSpec(pixels.name, pixels.dtype,
                                                          pixels.dims),),
        backend="python", instances=cpu,
        parameters=(("role", "preprocess"), ("data_config", json.dumps(
            {key: data_config[key] for key in _DATA_KEYS if key in data_config}))),
        comments=(f"decode PNG/JPEG bytes and preprocess them for {classifier.name}",))
    topk = ModelConfigSpec(
        names["topk"], batch, (TensorSpec(LOGITS, logits.dtype, logits.dims),), outputs,
        backend="python", instances=cpu,
        parameters=(("role", "topk"), ("k", str(k)), ("labels", "labels.txt")),
        comments=(f"softmax and the {k} best classes of {classifier.name}'s logits",))
    steps = (
        EnsembleStep(preprocess.name, ((IMAGE, IMAGE),), ((pixels.name, "pixels"),)),
        EnsembleStep(classifier.name, ((pixels.name, "pixels"),), ((logits.name, "logits"),)),
        EnsembleStep(topk.name, ((LOGITS, "logits"),),
                     tuple((o.name, o.name) for o in outputs)))
    ensemble = ModelConfigSpec(
        names["ensemble"], batch, (image,), outputs, platform="ensemble", steps=steps,
        comments=(f"encoded images -> {preprocess.name} -> {classifier.name} -> {topk.name}",))
    return [("preprocess", preprocess), ("topk", topk), ("ensemble", ensemble)]
