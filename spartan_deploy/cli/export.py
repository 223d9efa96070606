"""``spartan export``: the verified real-valued ONNX export of a SpaRTAN."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from spartan_deploy.cli.app import (
    ForceOpt, ImgSizeOpt, JsonOpt, ModelOpt, TrustOpt, WeightsOpt, command, console)
from spartan_deploy.errors import CheckpointError, UsageError
from spartan_deploy.export import (
    DEFAULT_OPSET, SUPPORTED_OPSETS, Exporter, ExportFormat, ExportOptions, ExportResult,
    PairMode, export_onnx)
from spartan_deploy.model import LoadedModel, load_model

_FORMATS = ", ".join(f.value for f in ExportFormat)


@command("export")
def export_command(
    fmt: Annotated[str, typer.Option(
        "--fmt", metavar=f"[{'|'.join(f.value for f in ExportFormat)}]",
        help=f"Export format. Accepted values: {_FORMATS}.")] = ExportFormat.ONNX.value,
    model: ModelOpt = None, weights: WeightsOpt = None, trust_checkpoint: TrustOpt = False,
    random_weights: Annotated[bool, typer.Option(
        "--random-weights", help="Export the architecture with random official "
                                 "initialisation when the model has no weights (pipeline "
                                 "and speed checks only; the manifest records it).")] = False,
    img_size: ImgSizeOpt = None,
    batch: Annotated[int | None, typer.Option(
        "--batch", metavar="N", help="Fixed batch size. Default: a dynamic batch axis.")]
        = None,
    dynamic_batch: Annotated[bool, typer.Option(
        "--dynamic-batch", help="Dynamic batch axis named 'batch' (the default).")] = False,
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
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="ONNX file. Default: runs/<model>/model.onnx")] = None,
    force: ForceOpt = False, as_json: JsonOpt = False,
) -> None:
    """Export to a verified ONNX file (real-valued graph, TensorRT operators, ORT parity)."""
    if batch is not None and dynamic_batch:
        raise UsageError("give --batch N or --dynamic-batch, not both")
    options = ExportOptions(fmt=parse_format(fmt), img_size=img_size, batch=batch,
                            opset=opset, atol=atol, exporter=exporter, pair_mode=pair_mode,
                            simplify=simplify)
    loaded = _load(model, weights, trust_checkpoint, random_weights)
    out = output or Path("runs") / loaded.name / "model.onnx"
    result = export_onnx(loaded, out, options, force=force)
    if as_json:
        console.print_json(json.dumps(result.manifest))
    else:
        _print_summary(result, loaded)


def parse_format(value: str) -> ExportFormat:
    """``--fmt``: one of the ExportFormat values, else a one-line error listing them."""
    try:
        return ExportFormat(value.lower())
    except ValueError:
        raise UsageError(f"--fmt {value!r} is not supported; use one of: {_FORMATS}") from None


def _load(model: str | None, weights: Path | None, trust: bool,
          random_weights: bool) -> LoadedModel:
    """``load_model``, with random weights only when the user asked for them."""
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
    manifest = result.manifest
    shape = manifest["io"]["inputs"][0]["shape"]
    source = ("random initialisation" if loaded.checkpoint is None
              else f"{loaded.weights_path} (sha256 {loaded.weights_sha256[:12]}...)")
    console.print(f"[bold green]wrote[/] {escape(str(result.path))} and "
                  f"{escape(result.manifest_path.name)}", highlight=False)
    console.print(f"  model {escape(loaded.name)} from {escape(source)}", highlight=False)
    console.print(f"  input {escape(str(shape))}, opset {result.opset}, "
                  f"{sum(result.operators.values())} nodes, simplified: "
                  f"{'yes' if result.simplified else 'no'}", highlight=False)
    console.print(f"  ONNX Runtime vs PyTorch on {parity.samples} seeded images: max abs "
                  f"{parity.max_abs_diff:.2e}, mean abs {parity.mean_abs_diff:.2e}, top-1 "
                  f"agreement {parity.top1_agreement:.1%}", highlight=False)
    console.print(f"  operators all on the TensorRT "
                  f"{manifest['tensorrt_ops_checked_against']} ONNX parser list; no "
                  f"Transpose, no complex or double tensors; {result.seconds:.1f} s",
                  highlight=False)
