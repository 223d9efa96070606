"""``spartan export``: the verified real-valued ONNX export of a SpaRTAN."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from spartan_deploy.cli.app import check_json_target, command, console, emit_json
from spartan_deploy.cli.options import (
    BatchOpt, ForceOpt, ImgSizeOpt, JsonOpt, ModelOpt, OutputOpt, TrustOpt, WeightsOpt,
    one_batch)
from spartan_deploy.errors import CheckpointError, UsageError
from spartan_deploy.export.options import (
    DEFAULT_OPSET, SUPPORTED_OPSETS, Exporter, ExportFormat, ExportOptions, PairMode)

if TYPE_CHECKING:
    from spartan_deploy.export.onnx_export import ExportResult
    from spartan_deploy.model import LoadedModel


@command("export")
def export_command(
    fmt: Annotated[ExportFormat, typer.Option("--fmt", help="Export format.")]
        = ExportFormat.ONNX,
    model: ModelOpt = None, weights: WeightsOpt = None, trust_checkpoint: TrustOpt = False,
    random_weights: Annotated[bool, typer.Option(
        "--random-weights", help="Export the architecture with random official "
                                 "initialisation when the model has no weights (pipeline "
                                 "and speed checks only; the manifest records it).")] = False,
    img_size: ImgSizeOpt = None,
    batch: BatchOpt = None,
    dynamic_batch: Annotated[bool, typer.Option(
        "--dynamic-batch", help="Dynamic batch axis named 'batch' (the default; --batch N "
                                "fixes it instead).")] = False,
    opset: Annotated[int, typer.Option(
        "--opset", metavar="N", help=f"ONNX opset; one of "
                                     f"{', '.join(map(str, SUPPORTED_OPSETS))}.")]
        = DEFAULT_OPSET,
    atol: Annotated[float, typer.Option(
        "--atol", help="Fail when ONNX Runtime logits differ from PyTorch by more.")] = 1e-4,
    exporter: Annotated[Exporter, typer.Option(
        "--exporter", help="torch.onnx exporter (dynamo needs --opset 18 or newer).")]
        = Exporter.TORCHSCRIPT,
    pair_mode: Annotated[PairMode, typer.Option(
        "--pair-mode", help="Where the wave mixer's complex pair map goes.")] = PairMode.AUTO,
    simplify: Annotated[bool, typer.Option(
        "--simplify/--no-simplify", help="Try onnxslim; kept only if parity holds.")] = True,
    output: OutputOpt = None, force: ForceOpt = False, json_path: JsonOpt = None,
) -> None:
    """Export to a verified ONNX file (real-valued graph, TensorRT operators, ORT parity).

    Default output: runs/MODEL/model.onnx, with its manifest model.onnx.json.
    """
    from spartan_deploy.export import export_onnx
    from spartan_deploy.paths import run_folder

    fixed = one_batch(batch, "export") if batch is not None else None
    if fixed is not None and dynamic_batch:
        raise UsageError("give --batch N or --dynamic-batch, not both")
    options = ExportOptions(fmt=fmt, img_size=img_size, batch=fixed, opset=opset, atol=atol,
                            exporter=exporter, pair_mode=pair_mode, simplify=simplify)
    check_json_target(json_path, force)
    loaded = _load(model, weights, trust_checkpoint, random_weights)
    out = output or run_folder(loaded.name) / "model.onnx"
    result = export_onnx(loaded, out, options, force=force)
    emit_json(result.manifest.to_dict(), json_path, force)
    if json_path is None or str(json_path) != "-":
        _print_summary(result, loaded)


def _load(model: str | None, weights: Path | None, trust: bool,
          random_weights: bool) -> LoadedModel:
    """``load_model``, with random weights only when the user asked for them."""
    from spartan_deploy.model import load_model

    if weights is not None and random_weights:
        raise UsageError("--random-weights and --weights exclude each other; give one")
    try:
        return load_model(model, weights, trust, allow_random=random_weights)
    except (UsageError, CheckpointError) as err:
        if weights is None and not random_weights:
            raise type(err)(f"{err}, or pass --random-weights for an architecture-only "
                            "export") from None
        raise


def _print_summary(result: ExportResult, loaded: LoadedModel) -> None:
    parity = result.parity
    details: dict[str, Any] = dict(result.manifest.details)
    shape = (result.manifest.io or {})["inputs"][0]["shape"]
    source = ("random initialisation" if loaded.checkpoint is None
              else f"{loaded.weights_path} (sha256 {loaded.weights_sha256[:12]}...)")
    console.print(f"[bold green]wrote[/] {escape(str(result.path))} and "
                  f"{escape(result.manifest_path.name)}", highlight=False)
    console.print(f"  model {escape(loaded.name)} from {escape(source)}", highlight=False)
    console.print(f"  input {escape(str(shape))}, opset {result.opset}, "
                  f"{sum(result.operators.values())} nodes, simplified: "
                  f"{'yes' if result.simplified else 'no'}", highlight=False)
    console.print(f"  ONNX Runtime vs PyTorch on {parity.samples} seeded images: "
                  f"{escape(parity.describe())}", highlight=False)
    console.print(f"  operators all on the TensorRT "
                  f"{details['tensorrt_ops_checked_against']} ONNX parser list; no "
                  f"Transpose, no complex or double tensors; {result.seconds:.1f} s",
                  highlight=False)
