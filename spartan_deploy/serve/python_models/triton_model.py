"""The ``model.py`` of every Python-backend model in a spartan Triton repository.

One file, three roles picked by the config parameter ``role``:

- ``classifier``: the artefact's ONNX graph through this toolkit's ONNX Runtime runner
  (``spartan_deploy.runtime.open_runner``): the CPU stand-in for Triton's onnxruntime
  backend, which the server shipped in ``nvidia-pytriton`` lacks. Same graph, same numbers.
- ``preprocess``: encoded images (PNG/JPEG bytes) to the float32 NCHW batch the model takes,
  following the model's data config (stored as the ``data_config`` parameter).
- ``topk``: logits to the k best classes (softmax scores, indices, labels).

This file runs inside Triton's Python backend stub, not inside the spartan package, so it
imports nothing from spartan at module level: preprocess and top-k need only numpy and
Pillow (install them in NVIDIA's container), the classifier needs spartan-deploy.
``tests/serve`` pins ``prepare_image`` to ``spartan_deploy.data.preprocess.to_array``.
"""

from __future__ import annotations

import io
import json
import os
import site
import sys
from typing import Any

ENV_SITE_PACKAGES = "SPARTAN_SITE_PACKAGES"


def use_environment() -> None:
    """Put the environment ``spartan serve`` runs in at the front of ``sys.path``.

    The stub embeds the system's libpython and ignores PYTHONPATH, so it would not see the
    virtual environment spartan is installed in; ``spartan serve`` names its site-packages
    in an environment variable. ``site.addsitedir`` also runs their .pth files (editable
    installs), and the entries go first so a system numpy cannot shadow the environment's.
    """
    before = list(sys.path)
    for entry in os.environ.get(ENV_SITE_PACKAGES, "").split(os.pathsep):
        if entry:
            site.addsitedir(entry)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before


# At import, not in initialize(): the stub imports triton_python_backend_utils (which needs
# numpy) right after this module and before it calls initialize().
use_environment()


def prepare_image(data: bytes, config: dict[str, Any]) -> Any:
    """Decode one encoded image and apply the data config: float32 (3, H, W).

    Mirrors ``spartan_deploy.data.preprocess.to_array`` step for step (mode conversion,
    bilinear resize or shorter-side resize + centre crop, scale, normalise).
    """
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        image = opened
    mode = "L" if config["grayscale"] else "RGB"
    if image.mode != mode:
        image = image.convert("RGB").convert(mode) if image.mode in ("P", "PA", "LA") \
            else image.convert(mode)
    image = _resize(image, config)
    pixels = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
    pixels = np.repeat(pixels[None], 3, axis=0) if pixels.ndim == 2 \
        else pixels.transpose(2, 0, 1)
    mean = np.asarray(config["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(config["std"], dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


def _resize(image: Any, config: dict[str, Any]) -> Any:
    from PIL import Image

    size = int(config["input_size"])
    bilinear = Image.Resampling.BILINEAR
    if config["resize_rule"] == "stretch":
        return image.resize((size, size), bilinear) if image.size != (size, size) else image
    width, height = image.size
    scale = int(config["resize_size"]) / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), bilinear)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def top_k(logits: Any, k: int, labels: list[str]) -> tuple[Any, Any, Any]:
    """Softmax scores, class indices and labels of the k best classes of each row."""
    import numpy as np

    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(probs, order, axis=1).astype(np.float32)
    names = np.array([[labels[i].encode() for i in row] for row in order], dtype=object)
    return scores, order.astype(np.int64), names


class _Classifier:
    def __init__(self, config: dict[str, Any], params: dict[str, str], folder: str) -> None:
        from spartan_deploy.runtime import Device, RunnerOptions, open_runner

        threads = int(params["threads"]) if params.get("threads") else None
        # No spinning: idle ONNX Runtime threads would busy-wait on the cores the server's
        # own threads (and, on one machine, the clients) need between two requests.
        options = RunnerOptions(device=Device.CPU, threads=threads, ort_spinning=False)
        self.runner = open_runner(os.path.join(folder, params["artefact"]), options)
        self.runner.activate()
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        self.half = config["output"][0]["data_type"] == "TYPE_FP16"

    def run(self, pb: Any, requests: list[Any]) -> list[Any]:
        import numpy as np

        # Triton's dynamic batcher hands over several requests at once: one run for all.
        arrays = [pb.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        logits = self.runner.infer(np.concatenate(arrays).astype(np.float32, copy=False))
        if self.half:
            logits = logits.astype(np.float16)
        bounds = np.cumsum([len(a) for a in arrays])[:-1]
        return [pb.InferenceResponse(output_tensors=[pb.Tensor(self.output, part)])
                for part in np.split(logits, bounds)]

    def close(self) -> None:
        self.runner.deactivate()


class _Preprocess:
    def __init__(self, config: dict[str, Any], params: dict[str, str], folder: str) -> None:
        self.data_config = json.loads(params["data_config"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        self.half = config["output"][0]["data_type"] == "TYPE_FP16"

    def run(self, pb: Any, requests: list[Any]) -> list[Any]:
        import numpy as np

        responses = []
        for request in requests:
            encoded = pb.get_input_tensor_by_name(request, self.input).as_numpy()
            try:
                batch = np.stack([prepare_image(bytes(item), self.data_config)
                                  for item in encoded.reshape(-1)])
                batch = batch.astype(np.float16) if self.half else batch
            except Exception as err:  # a corrupt image fails its request, not the server
                responses.append(pb.InferenceResponse(error=pb.TritonError(
                    f"cannot decode the image bytes ({type(err).__name__}: {err}); send "
                    "PNG or JPEG file contents")))
                continue
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(self.output,
                                                                             batch)]))
        return responses

    def close(self) -> None:
        pass


class _TopK:
    def __init__(self, config: dict[str, Any], params: dict[str, str], folder: str) -> None:
        self.k = int(params["k"])
        with open(os.path.join(folder, "..", params["labels"]), encoding="utf-8") as handle:
            self.labels = [line.rstrip("\n") for line in handle]
        self.input = config["input"][0]["name"]
        self.outputs = [o["name"] for o in config["output"]]

    def run(self, pb: Any, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            logits = pb.get_input_tensor_by_name(request, self.input).as_numpy()
            values = top_k(logits, self.k, self.labels)
            responses.append(pb.InferenceResponse(output_tensors=[
                pb.Tensor(name, value) for name, value in zip(self.outputs, values)]))
        return responses

    def close(self) -> None:
        pass


_ROLES = {"classifier": _Classifier, "preprocess": _Preprocess, "topk": _TopK}


class TritonPythonModel:
    """The class Triton's Python backend instantiates."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.role = _ROLES[params["role"]](config, params, folder)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb

        try:
            return self.role.run(pb, requests)
        except Exception as err:  # every request of the batch gets the error, server lives
            message = f"{type(err).__name__}: {err}"
            return [pb.InferenceResponse(error=pb.TritonError(message)) for _ in requests]

    def finalize(self) -> None:
        self.role.close()
