"""``export_onnx``: export form -> verified ONNX file with its manifest.

Order matters: everything is checked in memory (ONNX checker, TensorRT operator list,
dtypes, ONNX Runtime parity) before a single byte is written, and the file and manifest
are then written atomically, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import hashlib
import io
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from spartan_deploy._io import (
    atomic_path, check_output_path, library_versions, machine_info, manifest_path, quiet_logger,
    write_json)
from spartan_deploy.errors import ExportError, ParityError, UsageError
from spartan_deploy.export import checks
from spartan_deploy.export.form import DEFAULT_PAIR_MODE, PairMode, to_export_form
from spartan_deploy.model import MIN_IMG_SIZE, LoadedModel

INPUT_NAME, OUTPUT_NAME, BATCH_AXIS = "input", "logits", "batch"
# Opsets that ONNX Runtime and the TensorRT 10.x/11 parsers all read (TensorRT 10.0 stops
# at 20); 17 is the first with LayerNormalization and what the TorchScript exporter emits
# without any version conversion.
SUPPORTED_OPSETS = (17, 18, 19, 20)
DEFAULT_OPSET = 17


class ExportFormat(str, enum.Enum):
    """Export formats (``spartan export --fmt``)."""

    ONNX = "onnx"


class Exporter(str, enum.Enum):
    """Which torch.onnx exporter traces the export form."""

    TORCHSCRIPT = "torchscript"  # torch.onnx.export(dynamo=False)
    DYNAMO = "dynamo"  # torch.export + onnxscript; emits opset >= 18


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How to export. ``batch=None`` means a dynamic batch axis named ``batch``."""

    fmt: ExportFormat = ExportFormat.ONNX
    img_size: int | None = None  # None: the model's data config
    batch: int | None = None
    opset: int = DEFAULT_OPSET
    atol: float = 1e-4
    exporter: Exporter = Exporter.TORCHSCRIPT
    pair_mode: PairMode = DEFAULT_PAIR_MODE
    simplify: bool = True
    parity_batch: int = 2  # samples in the seeded parity batch (dynamic batch only)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v.value if isinstance(v, enum.Enum) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What was written and what was measured."""

    path: Path
    manifest_path: Path
    parity: checks.Parity
    opset: int
    simplified: bool
    operators: dict[str, int]
    seconds: float
    manifest: dict[str, Any]


def validate_options(options: ExportOptions) -> ExportOptions:
    """Reject bad option values up front (one line naming the value and what to use);
    returns the options with plain strings turned into their enums."""
    options = dataclasses.replace(
        options, fmt=_enum(ExportFormat, options.fmt, "--fmt"),
        exporter=_enum(Exporter, options.exporter, "--exporter"),
        pair_mode=_enum(PairMode, options.pair_mode, "--pair-mode"))
    if options.opset not in SUPPORTED_OPSETS:
        raise UsageError(f"--opset {options.opset} is not supported; use one of "
                         f"{', '.join(map(str, SUPPORTED_OPSETS))} (read by ONNX Runtime and "
                         "TensorRT 10/11)")
    if options.exporter is Exporter.DYNAMO and options.opset < 18:
        raise UsageError(f"the dynamo exporter emits opset 18 or newer, not {options.opset}; "
                         "use --opset 18 or the torchscript exporter")
    if options.batch is not None and options.batch < 1:
        raise UsageError(f"--batch {options.batch} must be at least 1")
    if options.img_size is not None and options.img_size < MIN_IMG_SIZE:
        raise UsageError(f"--img-size {options.img_size} is too small; use {MIN_IMG_SIZE} "
                         "or more")
    if not options.atol > 0:
        raise UsageError(f"--atol {options.atol} must be positive")
    if options.parity_batch < 1:
        raise UsageError(f"parity batch {options.parity_batch} must be at least 1")
    return options


def _enum(kind: type[enum.Enum], value: Any, flag: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        accepted = ", ".join(str(member.value) for member in kind)
        raise UsageError(f"{flag} {value!r} is not supported; use one of: {accepted}") from None


def export_onnx(loaded: LoadedModel, output: str | Path, options: ExportOptions = ExportOptions(),
                force: bool = False) -> ExportResult:
    """Export ``loaded`` to a verified ONNX file plus ``<output>.json`` manifest."""
    start = time.perf_counter()
    options = validate_options(options)
    if Path(output).suffix != ".onnx":
        raise UsageError(f"-o {str(output)!r} must end in .onnx (runners pick ONNX Runtime by "
                         "that suffix)")
    out = check_output_path(output, force=force)
    check_output_path(manifest_path(out), force=force)
    size = options.img_size or loaded.data_config.input_size
    form = to_export_form(loaded.model, options.pair_mode)
    with _one_torch_thread():
        graph = _export_graph(form, size, options)
        inputs = _parity_inputs(size, options)
        reference = _reference_logits(loaded.model, inputs)
    graph = _verify(graph)
    parity = _parity(graph, inputs, reference)
    _require(parity, options.atol, "exported ONNX")
    simplified = False
    if options.simplify:
        graph, parity, simplified = _try_simplify(graph, inputs, reference, parity, options)
    payload = graph.SerializeToString()
    seconds = time.perf_counter() - start
    manifest = _manifest(loaded, out, options, size, graph, parity, simplified, seconds)
    manifest["sha256"] = hashlib.sha256(payload).hexdigest()
    _write(out, payload, manifest)
    return ExportResult(out, manifest_path(out), parity, options.opset, simplified,
                        manifest["operators"], seconds, manifest)


def _write(out: Path, payload: bytes, manifest: dict[str, Any]) -> None:
    """Both files through temporaries: the ONNX file is renamed into place, then its manifest.

    A failure while writing either leaves neither temporary behind and no new ONNX file.
    """
    try:
        with atomic_path(manifest_path(out)) as tmp_json:
            with atomic_path(out) as tmp_onnx:
                tmp_onnx.write_bytes(payload)
                write_json(tmp_json, manifest)
    except OSError as err:
        raise ExportError(f"cannot write {str(out)!r}: {err.strerror or err}; check the "
                          "folder and free space, or choose another -o") from None


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Trace and compute the reference single-threaded, restoring the setting after.

    Both are small one-off computations; on a shared machine two OpenMP threads fighting
    for oversubscribed cores made them up to ten times slower than one thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)



def _export_graph(form: torch.nn.Module, size: int, options: ExportOptions) -> onnx.ModelProto:
    """Trace the export form into an in-memory ONNX model."""
    example = torch.zeros(options.batch or 2, 3, size, size)
    buffer = io.BytesIO()
    common = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                  opset_version=options.opset, do_constant_folding=True)
    try:
        with warnings.catch_warnings(), torch.no_grad(), quiet_logger("torch.onnx"):
            warnings.simplefilter("ignore")
            if options.exporter is Exporter.DYNAMO:
                dims = None if options.batch else {"x": {0: torch.export.Dim(BATCH_AXIS)}}
                program = torch.onnx.export(form, (example,), dynamo=True, dynamic_shapes=dims,
                                            verbose=False, **common)
                return program.model_proto
            axes = None if options.batch else {INPUT_NAME: {0: BATCH_AXIS},
                                               OUTPUT_NAME: {0: BATCH_AXIS}}
            torch.onnx.export(form, (example,), buffer, dynamo=False, dynamic_axes=axes,
                              **common)
    except (RuntimeError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ExportError(f"torch.onnx.export ({options.exporter.value}) failed: {first}") from None
    return onnx.load_from_string(buffer.getvalue())


def _verify(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Checker + shape inference, TensorRT operator list, dtypes. Returns the inferred graph."""
    inferred = checks.check_structure(graph)
    checks.check_tensorrt_ops(inferred)
    checks.check_dtypes(inferred)
    return inferred


def _parity_inputs(size: int, options: ExportOptions) -> list[np.ndarray]:
    """Seeded standard-normal batches (what normalised images look like to the network).

    A dynamic-batch export is checked at two batch sizes, proving the batch axis works.
    """
    rng = np.random.default_rng(options.seed)
    sizes = [options.batch] if options.batch else [options.parity_batch, 1]
    return [rng.standard_normal((n, 3, size, size), dtype=np.float32) for n in sizes]


@torch.no_grad()
def _reference_logits(model: torch.nn.Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return [model(torch.from_numpy(x).to(device)).float().cpu().numpy() for x in inputs]
    finally:
        model.train(was_training)


def _parity(graph: onnx.ModelProto, inputs: list[np.ndarray],
            reference: list[np.ndarray]) -> checks.Parity:
    session = checks.ort_session(graph, threads=1)  # one-off check: see _one_torch_thread
    results = []
    for x, ref in zip(inputs, reference):
        try:
            (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        except Exception as err:  # ORT's own exception types
            first = str(err).strip().splitlines()[0][:200]
            raise ExportError(f"ONNX Runtime failed on a batch of {len(x)}: {first}") from None
        results.append(checks.compare_logits(logits, ref))
    return checks.merge_parity(results)


def _require(parity: checks.Parity, atol: float, what: str) -> None:
    if not parity.max_abs_diff <= atol:
        raise ParityError(
            f"{what} disagrees with the PyTorch model: max abs logit difference "
            f"{parity.max_abs_diff:.3g} > --atol {atol:g} (mean {parity.mean_abs_diff:.3g}, "
            f"top-1 agreement {parity.top1_agreement:.1%}); nothing was written")


def _try_simplify(graph: onnx.ModelProto, inputs: list[np.ndarray], reference: list[np.ndarray],
                  parity: checks.Parity, options: ExportOptions
                  ) -> tuple[onnx.ModelProto, checks.Parity, bool]:
    """onnxslim's graph, kept only if it still passes every check and parity."""
    try:
        import onnxslim

        slim = onnxslim.slim(onnx.ModelProto.FromString(graph.SerializeToString()))
        slim = _verify(slim)
        slim_parity = _parity(slim, inputs, reference)
    except Exception:  # any failure of the optional simplification keeps the checked graph
        return graph, parity, False
    if not slim_parity.max_abs_diff <= options.atol:
        return graph, parity, False
    return slim, slim_parity, True


def _io_shapes(graph: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    def describe(values) -> list[dict[str, Any]]:
        return [{"name": v.name,
                 "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
                 "dtype": onnx.helper.tensor_dtype_to_np_dtype(
                     v.type.tensor_type.elem_type).name} for v in values]
    return {"inputs": describe(graph.graph.input), "outputs": describe(graph.graph.output)}


def _describe_form(loaded: LoadedModel, options: ExportOptions) -> dict[str, Any]:
    """What the export form changed, for the record."""
    return {
        "exporter": options.exporter.value,
        "pair_mode": options.pair_mode.value,
        "folds": ["BatchNorm into the conv before it", "layer scales into proj_out",
                  "norm_1 affine and 1 + gamma into smixer.proj_in",
                  "complex pair map into the 3x3 conv or a grouped 1x1 conv"],
        "one_group_norm": "ReduceMean arithmetic",
        "superposition": "ArgMax(axis=1, keepdims=1) + one GatherElements(axis=1)",
        "pruned": loaded.config.is_pruned,
    }


def _manifest(loaded: LoadedModel, out: Path, options: ExportOptions, size: int,
              graph: onnx.ModelProto, parity: checks.Parity, simplified: bool,
              seconds: float) -> dict[str, Any]:
    checkpoint = loaded.checkpoint
    return {
        "artefact": out.name,
        "kind": "onnx",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": loaded.name,
        "source_sha256": loaded.weights_sha256,
        "source": {
            "checkpoint": str(checkpoint.path) if checkpoint and checkpoint.path else None,
            "sha256": loaded.weights_sha256,
            "checkpoint_format": checkpoint.source if checkpoint else None,
            "random_init": checkpoint is None,
        },
        "config": loaded.config.to_dict(),
        "data_config": loaded.data_config.with_input_size(size).to_dict(),
        "options": options.to_dict(),
        "opset": options.opset,
        "export_form": _describe_form(loaded, options),
        "img_size": size,
        "dynamic_batch": options.batch is None,
        "simplified": simplified,
        "io": _io_shapes(graph),
        "parity": {"reference": "PyTorch training form (float32, CPU)",
                   "runtime": "onnxruntime CPUExecutionProvider", "atol": options.atol,
                   "seed": options.seed, **parity.to_dict()},
        "operators": checks.operator_counts(graph),
        "tensorrt_ops_checked_against": checks.tensorrt_ops().tensorrt_version,
        "export_seconds": round(seconds, 2),
        "versions": library_versions(),
        "machine": machine_info(),
    }
