"""Served logits against in-process ONNX Runtime on the same images, before any load.

The reference is the ONNX file the model was made from: ``--reference FILE`` or the copy in
``--repository REPO`` (``REPO/MODEL/1/model.onnx``, the very bytes the server loaded). The
images are real ones (``--data``, preprocessed with the data config the artefact records);
the figures come from the toolkit's one ``compare``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy._io import sha256_file
from spartan_deploy.errors import ParityError, UsageError
from spartan_deploy.serve.client import ModelIO, infer_once

_SERVED_CHUNK = 16  # images per parity request (well under any max_batch_size we write)


@dataclasses.dataclass(frozen=True)
class ParityResult:
    reference: Path
    sha256: str
    data: str
    atol: float
    comparison: Any  # spartan_deploy.evaluation.Comparison
    images: np.ndarray = dataclasses.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"reference": str(self.reference), "sha256": self.sha256, "data": self.data,
                "atol": self.atol, "runtime": "onnxruntime CPUExecutionProvider (in process)",
                **self.comparison.to_dict()}


def resolve_reference(reference: Path | None, repository: Path | None, model: str) -> Path:
    """The ONNX file to compare the served model with."""
    if reference is not None:
        path = Path(reference)
    elif repository is not None:
        version = Path(repository) / model / "1"
        if (version / "model.plan").is_file():
            raise UsageError(f"model {model!r} serves a TensorRT engine; give --reference the "
                             "ONNX file it was built from")
        path = version / "model.onnx"
    else:
        raise UsageError("give --repository REPO (the folder spartan serve runs) or "
                         "--reference MODEL.onnx: served logits are checked against "
                         "in-process ONNX Runtime before the load starts")
    if path.suffix.lower() != ".onnx" or not path.is_file():
        raise UsageError(f"reference {str(path)!r} is not an existing .onnx file; give the "
                         "ONNX graph the served model was made from")
    return path


def check_parity(client: Any, options: Any, model: str, io: ModelIO, url: str) -> ParityResult:
    """Compare; :class:`ParityError` beyond ``options.atol`` (the load never starts)."""
    from spartan_deploy.evaluation import compare, logits_over
    from spartan_deploy.runtime import Device, RunnerOptions, open_runner

    if io.max_batch_size == 0:
        raise UsageError(f"model {model!r} has a fixed batch (max_batch_size 0); loadtest "
                         "drives models with a dynamic batch axis")
    if options.batch > io.max_batch_size:
        raise UsageError(f"--batch {options.batch} exceeds model {model!r}'s max batch size "
                         f"{io.max_batch_size}; use at most {io.max_batch_size}")
    reference = resolve_reference(options.reference, options.repository, model)
    images, described = _images(reference, io, options)
    chunk = min(_SERVED_CHUNK, io.max_batch_size)
    served = np.concatenate([infer_once(client, options.protocol, model, io,
                                        images[i:i + chunk])
                             for i in range(0, len(images), chunk)])
    local = logits_over(open_runner(reference, RunnerOptions(device=Device.CPU)), images,
                        batch_size=chunk)
    comparison = compare(local, served)
    if comparison.nonfinite_rows or not comparison.max_abs_diff <= options.atol:
        raise ParityError(f"served model {model!r} at {url} differs from {str(reference)!r} "
                          f"in process: {comparison.describe()}, above --atol "
                          f"{options.atol:g}; is the server running this artefact?")
    return ParityResult(reference, sha256_file(reference), described, options.atol,
                        comparison, images)


def _images(reference: Path, io: ModelIO, options: Any) -> tuple[np.ndarray, str]:
    """Real images preprocessed as the artefact records, else seeded random ones."""
    from spartan_deploy.manifest import read_manifest
    from spartan_deploy.model.config import DataConfig

    manifest = read_manifest(reference)
    recorded = dict(manifest.data_config) if manifest and manifest.data_config else None
    if recorded is None:
        rng = np.random.default_rng(0)
        shape = (options.check_images, *io.input_dims)
        return rng.standard_normal(shape, dtype=np.float32), "random normal (seed 0)"
    from spartan_deploy.evaluation import load_eval_data

    config = DataConfig.from_dict(recorded, f"data config of {reference}")
    size = io.input_dims[-1]
    if config.input_size != size:
        config = config.with_input_size(size)
    data = load_eval_data(options.data, config, limit=options.check_images)
    return data.images, f"{options.data} ({len(data)} images, test split)"
