"""Options shared by the commands, declared once: one spelling, one default, one check.

A flag means the same thing in every command that takes it. Values are checked while the
command line is parsed (a one-line error naming the value), so no command starts work on a
bad one. Nothing here imports torch, onnx or onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from spartan_deploy._validate import parse_int_text, positive_int
from spartan_deploy.errors import UsageError
from spartan_deploy.model.config import MAX_IMG_SIZE, MIN_IMG_SIZE
from spartan_deploy.precision import Precision
from spartan_deploy.runtime.options import Device, Runtime

MAX_BATCH = 65536
MAX_THREADS = 1024
DEFAULT_BATCH = 256


def _checked(check: Any) -> Any:
    """Turn a library check (raising UsageError) into a command-line parser."""

    def parse(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except UsageError as err:
            raise typer.BadParameter(str(err)) from None

    return parse


def _img_size(text: Any) -> int:
    try:
        size = parse_int_text(text, "--img-size")
    except UsageError:
        raise UsageError(f"--img-size {text!r} is not an integer; give a size in pixels, "
                         f"{MIN_IMG_SIZE} or more") from None
    if size < MIN_IMG_SIZE:
        raise UsageError(f"--img-size {size} is too small; use {MIN_IMG_SIZE} or more")
    return positive_int(size, "--img-size", MAX_IMG_SIZE)


def parse_batches(text: Any) -> tuple[int, ...]:
    """``256`` or ``1,32,256`` -> (1, 32, 256), duplicates dropped, each 1..MAX_BATCH."""
    if isinstance(text, tuple):
        return text
    sizes = [positive_int(parse_int_text(part, "--batch"), "--batch", MAX_BATCH)
             for part in str(text).split(",")]
    return tuple(dict.fromkeys(sizes))


def one_batch(batches: tuple[int, ...], command: str) -> int:
    """The single batch size of a command that runs at one size."""
    if len(batches) != 1:
        raise UsageError(f"--batch {','.join(map(str, batches))}: {command} takes one batch "
                         "size; give e.g. --batch 64")
    return batches[0]


def _positive(option: str, maximum: int | None = None) -> Any:
    return _checked(lambda text: positive_int(parse_int_text(text, option), option, maximum))


# --- what to load -----------------------------------------------------------------------
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Bundled model name or a model YAML file. Default: the bundled "
                          "digits-trained spartan-t.")]
WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", "-w", help="Checkpoint: bare state dict, official training checkpoint "
                            "(module./_orig_mod. prefixes fine) or ours.")]
TrustOpt = Annotated[bool, typer.Option(
    "--trust-checkpoint", help="Allow unpickling arbitrary objects (e.g. an OmegaConf "
                               "config) from a checkpoint you trust.")]

# --- data -------------------------------------------------------------------------------
DataOpt = Annotated[str | None, typer.Option(
    "--data", help="Labelled images: 'digits' (built in) or a folder of class sub-folders. "
                   "Default: the data the model records (digits for the bundled model).")]
LimitOpt = Annotated[int | None, typer.Option(
    "--limit", metavar="N", parser=_positive("--limit"),
    help="Use a seeded subset of N --data images.")]
CalibOpt = Annotated[Path | None, typer.Option(
    "--calib", help="Folder of calibration images. Default: the bundled calibration set "
                    "(512 digits from the training split).")]

# --- shapes and threads -----------------------------------------------------------------
ImgSizeOpt = Annotated[int | None, typer.Option(
    "--img-size", metavar="N", parser=_checked(_img_size),
    help=f"Input size in pixels ({MIN_IMG_SIZE}-{MAX_IMG_SIZE}). Default: the model's "
         "data config.")]
BatchOpt = Annotated[Any, typer.Option(
    "--batch", "-b", metavar="N[,N...]", parser=_checked(parse_batches),
    help="Batch size (bench: a comma list, e.g. 1,32,256).")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", metavar="N", parser=_positive("--threads", MAX_THREADS),
    help="CPU threads for PyTorch and ONNX Runtime. Default: the library's (all cores).")]

# --- how to run -------------------------------------------------------------------------
DeviceOpt = Annotated[Device, typer.Option(
    "--device", help="auto: CUDA when present, else CPU.")]
RuntimeOpt = Annotated[Runtime, typer.Option(
    "--runtime", help="Runtime for ONNX files: onnxruntime (default) or openvino "
                      "(the 'openvino' extra). Checkpoints run on torch, engines on tensorrt.")]
PrecisionOpt = Annotated[Precision, typer.Option(
    "--precision", help="Compute precision of the runtime: fp32, or fp16/bf16 autocast "
                        "(PyTorch) and bf16 (OpenVINO, where the CPU has it).")]

# --- outputs ----------------------------------------------------------------------------
OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Output file. Default: under runs/MODEL/.")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Replace an existing output (never done without it).")]
JsonOpt = Annotated[Path | None, typer.Option(
    "--json", metavar="PATH", help="Also write the full results as JSON to PATH ('-': "
                                   "standard output).")]
ReportOpt = Annotated[Path | None, typer.Option(
    "--report", metavar="DIR", help="Write report.md, report.json and a plot into DIR.")]
