"""``write_repository``: a Triton model repository, one model per artefact.

Each model folder holds the native config (``onnxruntime_onnx`` or ``tensorrt_plan``, for
NVIDIA's container), for ONNX graphs a CPU variant (``configs/cpu.pbtxt``: the Python
backend over this toolkit's ONNX Runtime runner, for the server shipped in
``nvidia-pytriton``), ``labels.txt``, and in ``1/`` the artefact with its manifest and
sha256. Every config is parsed against Triton's ``ModelConfig`` schema before it is written.
The repository is built in a temporary folder beside the target and renamed into place, so
a failure leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spartan_deploy._io import ensure_writable, library_versions, sha256_file
from spartan_deploy._validate import optional_positive_int, positive_int
from spartan_deploy.errors import OutputExistsError, UsageError
from spartan_deploy.manifest import manifest_path
from spartan_deploy.precision import Precision
from spartan_deploy.serve import ensemble as ens
from spartan_deploy.serve.artefacts import ServedArtefact, ServedKind, inspect_artefact, model_name
from spartan_deploy.serve.batching import BatchingPolicy, BatchingRequest, resolve_policy
from spartan_deploy.serve.errors import ArtefactChangedError
from spartan_deploy.serve.model_config import (
    CONFIG_NAME, CPU_CONFIG_NAME, CUSTOM_CONFIG_DIR, DynamicBatching, InstanceGroup,
    InstanceKind, ModelConfigSpec, TensorRTAccelerator, write_config)
from spartan_deploy.serve.python_models import model_source

DEFAULT_MAX_BATCH = 64  # ONNX graphs with a dynamic batch axis, unless --max-batch says
LABELS = "labels.txt"
SUMMARY = "repository.json"
README = "README.md"
VERSION = "1"
_TRT_PRECISION = {Precision.FP32: "FP32", Precision.FP16: "FP16", Precision.INT8: "INT8",
                  Precision.INT8_FP16: "INT8"}


@dataclasses.dataclass(frozen=True)
class RepositoryOptions:
    """How to write the repository (see ``spartan triton --help``)."""

    batching: BatchingRequest = BatchingRequest()
    max_batch: int | None = None
    ort_tensorrt: bool = False  # ONNX Runtime's TensorRT accelerator in the native config
    ensemble: bool = False
    top_k: int = 5
    labels: Path | None = None
    names: tuple[str, ...] = ()
    cpu_threads: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        optional_positive_int(self.max_batch, "--max-batch", 1 << 16)
        positive_int(self.top_k, "--top-k")
        optional_positive_int(self.cpu_threads, "--threads")
        if self.labels is not None and not Path(self.labels).is_file():
            raise UsageError(f"--labels {str(self.labels)!r} does not exist; give a text "
                             "file with one class name per line")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model of the repository."""

    name: str
    role: str  # classifier | preprocess | topk | ensemble
    platform: str  # onnxruntime_onnx | tensorrt_plan | python | ensemble
    max_batch_size: int
    artefact: str | None = None
    sha256: str | None = None
    precision: str | None = None
    cpu_config: bool = False  # has configs/cpu.pbtxt (runs on the bundled CPU server)
    batching: BatchingPolicy | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["batching"] = self.batching.to_dict() if self.batching else None
        return data


@dataclasses.dataclass(frozen=True)
class RepositoryResult:
    folder: Path
    models: tuple[ModelEntry, ...]

    @property
    def classifiers(self) -> tuple[ModelEntry, ...]:
        return tuple(m for m in self.models if m.role == "classifier")

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "models": [m.to_dict() for m in self.models],
                "versions": library_versions()}


def write_repository(artefacts: Sequence[str | Path], folder: str | Path,
                     options: RepositoryOptions = RepositoryOptions()) -> RepositoryResult:
    """Check every artefact, then write the repository ``folder`` atomically."""
    folder = Path(folder)
    _check_target(folder, options.force)
    if not artefacts:
        raise UsageError("no artefact given; name at least one .onnx or .plan file")
    served = [inspect_artefact(a) for a in artefacts]
    names = _names(served, options.names)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp",
                                    dir=folder.parent))
    try:
        models: list[ModelEntry] = []
        for artefact, name in zip(served, names):
            models += _write_model(staging, artefact, name, options)
        result = RepositoryResult(folder, tuple(models))
        from spartan_deploy.serve.readme import repository_readme

        (staging / README).write_text(repository_readme(result))
        (staging / SUMMARY).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        _swap_into_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _check_target(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"-o {str(folder)!r} is a file; give a folder for the repository")
    if folder.exists() and not force and any(folder.iterdir()):
        raise OutputExistsError(f"repository {str(folder)!r} already exists; pass --force "
                                "to replace it or choose another -o")
    folder.parent.mkdir(parents=True, exist_ok=True)
    ensure_writable(folder.parent)


def _names(served: Sequence[ServedArtefact], given: Sequence[str]) -> list[str]:
    """``--name`` values, else ``<model>-<precision>``; defaults that collide (INT8 graphs
    for two targets) fall back to names from their file names."""
    if given and len(given) != len(served):
        raise UsageError(f"--name given {len(given)} time(s) for {len(served)} artefact(s); "
                         "give one --name per artefact, in order, or none")
    names = [model_name(n) for n in given] if given else [a.default_name() for a in served]
    if not given:
        clashing = {n for n in names if names.count(n) > 1}
        names = [a.file_name_model() if n in clashing else n for a, n in zip(served, names)]
    seen: dict[str, Path] = {}
    for artefact, name in zip(served, names):
        if name in seen:
            raise UsageError(f"{str(seen[name])!r} and {str(artefact.path)!r} both become "
                             f"model {name!r}; name them with --name (one per artefact)")
        seen[name] = artefact.path
    return names


def _swap_into_place(staging: Path, folder: Path) -> None:
    """Rename the finished repository over ``folder`` (the old one removed only after)."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _max_batch(artefact: ServedArtefact, wanted: int | None) -> int:
    """Triton's max_batch_size: the engine profile's max, --max-batch, or 0 (fixed batch)."""
    if artefact.batch is not None:
        if wanted is not None:
            raise UsageError(f"{str(artefact.path)!r} has a fixed batch of {artefact.batch}; "
                             "drop --max-batch or export with a dynamic batch axis")
        return 0
    if artefact.profile_max is not None:
        if wanted is not None and wanted > artefact.profile_max:
            raise UsageError(f"--max-batch {wanted} exceeds the engine profile's max "
                             f"{artefact.profile_max} of {str(artefact.path)!r}; give at most "
                             f"{artefact.profile_max} or rebuild with a larger --max-batch")
        return wanted or artefact.profile_max
    return wanted or DEFAULT_MAX_BATCH


def _write_model(root: Path, artefact: ServedArtefact, name: str,
                 options: RepositoryOptions) -> list[ModelEntry]:
    max_batch = _max_batch(artefact, options.max_batch)
    request = options.batching if max_batch else dataclasses.replace(
        options.batching, enabled=False, preferred=None, queue_delay_us=None, bench=None)
    policy = resolve_policy(request, artefact.path, max(max_batch, 1))
    folder = root / name
    _copy_artefact(artefact, folder / VERSION)
    labels = _labels(artefact, options.labels)
    (folder / LABELS).write_text("\n".join(labels) + "\n")
    comments = (f"{name}: {artefact.kind.value} {artefact.precision.value} from "
                f"{artefact.path.name} (sha256 {artefact.sha256[:16]}...)",
                f"batching: {policy.describe()}")
    native = _classifier_spec(artefact, name, max_batch, policy, InstanceKind.GPU, comments)
    if options.ort_tensorrt and artefact.kind is ServedKind.ONNX:
        native = dataclasses.replace(native, accelerator=_accelerator(artefact))
    write_config(folder / CONFIG_NAME, native)
    cpu = artefact.kind is ServedKind.ONNX
    if cpu:
        _write_cpu_variant(folder, artefact, native, options.cpu_threads)
    entry = ModelEntry(name, "classifier", native.platform or "", max_batch,
                       str(artefact.path), artefact.sha256, artefact.precision.value, cpu,
                       policy)
    extra = _write_ensemble(root, artefact, name, native, options.top_k, labels) \
        if options.ensemble else []
    return [entry, *extra]


def _write_ensemble(root: Path, artefact: ServedArtefact, name: str,
                    classifier: ModelConfigSpec, top_k: int,
                    labels: list[str]) -> list[ModelEntry]:
    """Preprocess, top-k and the ensemble chaining them around the classifier."""
    if classifier.max_batch_size == 0:
        raise UsageError(f"--ensemble needs a dynamic batch axis; {str(artefact.path)!r} has "
                         "a fixed batch (export it without --batch)")
    data_config = artefact.manifest.data_config
    if not data_config:
        raise UsageError(f"--ensemble needs the preprocessing {str(artefact.path)!r} was made "
                         "for, and its manifest records no data_config; re-export it")
    specs = ens.ensemble_specs(classifier, dict(data_config), min(top_k, len(labels)))
    entries = []
    for role, spec in specs:
        folder = root / spec.name
        write_config(folder / CONFIG_NAME, spec)
        version = folder / VERSION
        version.mkdir(parents=True)
        if spec.backend == "python":
            (version / "model.py").write_text(model_source())
        if role == "topk":
            (folder / LABELS).write_text("\n".join(labels) + "\n")
        entries.append(ModelEntry(spec.name, role, spec.platform or spec.backend or "",
                                  spec.max_batch_size))
    return entries


def _copy_artefact(artefact: ServedArtefact, version: Path) -> None:
    version.mkdir(parents=True)
    target = version / artefact.kind.file_name
    shutil.copyfile(artefact.path, target)
    # The copy is what Triton will load: check it, not only the source.
    if sha256_file(target) != artefact.sha256:
        raise ArtefactChangedError(f"{str(artefact.path)!r} changed while it was copied; "
                                   "run spartan triton again")
    shutil.copyfile(manifest_path(artefact.path), manifest_path(target))
    (version / f"{target.name}.sha256").write_text(f"{artefact.sha256}  {target.name}\n")


def _labels(artefact: ServedArtefact, given: Path | None) -> list[str]:
    classes = artefact.num_classes
    if given is not None:
        labels = [line.strip() for line in Path(given).read_text().splitlines() if line.strip()]
        if len(labels) != classes:
            raise UsageError(f"--labels {str(given)!r} has {len(labels)} names but "
                             f"{str(artefact.path)!r} has {classes} classes; give one name "
                             "per class, in class-index order")
        return labels
    recorded = artefact.manifest.details.get("class_names")
    if isinstance(recorded, list) and len(recorded) == classes:
        return [str(c) for c in recorded]
    return [str(i) for i in range(classes)]


def _classifier_spec(artefact: ServedArtefact, name: str, max_batch: int,
                     policy: BatchingPolicy, kind: InstanceKind,
                     comments: tuple[str, ...]) -> ModelConfigSpec:
    inp, out = artefact.input, dataclasses.replace(artefact.output, label_file=LABELS)
    if max_batch == 0:  # a fixed-batch graph: Triton sees the batch axis as a plain dim
        fixed = (artefact.batch or 1,)
        inp = dataclasses.replace(inp, dims=fixed + inp.dims)
        out = dataclasses.replace(out, dims=fixed + out.dims)
    batching = DynamicBatching(policy.preferred, policy.queue_delay_us) \
        if policy.enabled and max_batch else None
    return ModelConfigSpec(name, max_batch, (inp,), (out,), platform=artefact.kind.platform,
                           batching=batching, instances=InstanceGroup(policy.instances, kind),
                           comments=comments)


def _accelerator(artefact: ServedArtefact) -> TensorRTAccelerator:
    mode = _TRT_PRECISION.get(artefact.precision)
    if mode is None:
        raise UsageError(f"{str(artefact.path)!r} is {artefact.precision.value}; the ONNX "
                         "Runtime TensorRT accelerator takes fp32, fp16 or int8 graphs")
    return TensorRTAccelerator(mode)


def _write_cpu_variant(folder: Path, artefact: ServedArtefact, native: ModelConfigSpec,
                       threads: int | None) -> None:
    params = [("role", "classifier"), ("artefact", artefact.kind.file_name)]
    if threads:
        params.append(("threads", str(threads)))
    cpu = dataclasses.replace(
        native, platform=None, backend="python", accelerator=None,
        instances=dataclasses.replace(native.instances, kind=InstanceKind.CPU),
        parameters=tuple(params),
        comments=native.comments + ("CPU variant: the same graph through spartan's ONNX "
                                    "Runtime runner in Triton's Python backend",))
    write_config(folder / CUSTOM_CONFIG_DIR / f"{CPU_CONFIG_NAME}.pbtxt", cpu)
    (folder / VERSION / "model.py").write_text(model_source())
