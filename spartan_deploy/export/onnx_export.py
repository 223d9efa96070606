"""``export_onnx``: export form -> verified ONNX file with its manifest.

Order matters: everything is checked in memory (ONNX checker, TensorRT operator list,
dtypes, ONNX Runtime parity) before a single byte is written, and the file and manifest
are then written atomically, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from spartan_deploy._io import check_output_path, quiet_logger
from spartan_deploy.errors import ExportError, ParityError, UsageError
from spartan_deploy.evaluation import Comparer, Comparison
from spartan_deploy import onnx_checks as checks
from spartan_deploy.export.form import to_export_form
from spartan_deploy.export.options import ExportOptions, Exporter
from spartan_deploy.manifest import (
    ArtefactKind, Manifest, manifest_path, origin_of, parent_of, save_artefact)
from spartan_deploy.model import LoadedModel
from spartan_deploy.precision import Precision
from spartan_deploy.runtime.ort_session import SessionSpec, first_line, open_session

INPUT_NAME, OUTPUT_NAME, BATCH_AXIS = "input", "logits", "batch"


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What was written and what was measured."""

    path: Path
    manifest_path: Path
    parity: Comparison
    opset: int
    simplified: bool
    operators: dict[str, int]
    seconds: float
    manifest: Manifest


def export_onnx(loaded: LoadedModel, output: str | Path, options: ExportOptions = ExportOptions(),
                force: bool = False) -> ExportResult:
    """Export ``loaded`` to a verified ONNX file plus ``<output>.json`` manifest."""
    start = time.perf_counter()
    if Path(output).suffix != ".onnx":
        raise UsageError(f"-o {str(output)!r} must end in .onnx (runners pick ONNX Runtime by "
                         "that suffix)")
    out = check_output_path(output, force=force)
    check_output_path(manifest_path(out), force=force)
    size = options.img_size or loaded.data_config.input_size
    from spartan_deploy._resources import check_batch

    check_batch(options.batch or 2, size, loaded.config)  # the traced and parity batches
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
    manifest = save_artefact(out, lambda tmp: tmp.write_bytes(payload),
                             _manifest(loaded, out, options, size, graph, parity, simplified,
                                       seconds))
    return ExportResult(out, manifest_path(out), parity, options.opset, simplified,
                        dict(manifest.details["operators"]), seconds, manifest)


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
            reference: list[np.ndarray]) -> Comparison:
    # One-off check: one thread (see _one_torch_thread), the optimised graph users will run.
    session = open_session(graph, SessionSpec(threads=1), what="the exported graph")
    comparer = Comparer()
    for x, ref in zip(inputs, reference):
        try:
            (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        except Exception as err:  # ORT's own exception types
            raise ExportError(f"ONNX Runtime failed on a batch of {len(x)}: "
                              f"{first_line(err)}") from None
        comparer.add(ref, logits)
    return comparer.result()


def _require(parity: Comparison, atol: float, what: str) -> None:
    if not parity.max_abs_diff <= atol:
        raise ParityError(
            f"{what} disagrees with the PyTorch model: max abs logit difference "
            f"{parity.max_abs_diff:.3g} > --atol {atol:g} (mean {parity.mean_abs_diff:.3g}, "
            f"top-1 agreement {parity.top1_agreement:.1%}); nothing was written")


def _try_simplify(graph: onnx.ModelProto, inputs: list[np.ndarray], reference: list[np.ndarray],
                  parity: Comparison, options: ExportOptions
                  ) -> tuple[onnx.ModelProto, Comparison, bool]:
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
              graph: onnx.ModelProto, parity: Comparison, simplified: bool,
              seconds: float) -> Manifest:
    checkpoint = loaded.checkpoint
    from_file = checkpoint is not None and checkpoint.path is not None
    parent = parent_of(checkpoint.path, out, checkpoint.sha256) if from_file else None
    # A pruned checkpoint has a manifest of its own: the chain starts where it started.
    origin = origin_of(checkpoint.path) if from_file else loaded.weights_sha256
    return Manifest(
        kind=ArtefactKind.ONNX, stage="export", precision=Precision.FP32, parent=parent,
        checkpoint_sha256=origin, model=loaded.name,
        config=loaded.config.to_dict(),
        data_config=loaded.data_config.with_input_size(size).to_dict(),
        io=_io_shapes(graph), options=options.to_dict(),
        measurements={"parity": {"reference": "PyTorch training form (float32, CPU)",
                                 "runtime": "onnxruntime CPUExecutionProvider",
                                 "atol": options.atol, "seed": options.seed,
                                 **parity.to_dict()}},
        details={"opset": options.opset, "dynamic_batch": options.batch is None,
                 "simplified": simplified, "export_form": _describe_form(loaded, options),
                 "checkpoint_format": checkpoint.source if checkpoint else None,
                 "random_init": checkpoint is None,
                 "operators": checks.operator_counts(graph),
                 "tensorrt_ops_checked_against": checks.tensorrt_ops().tensorrt_version,
                 "export_seconds": round(seconds, 2)})
