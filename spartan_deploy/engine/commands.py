"""Command lines for NVIDIA's tools and ours, to build and check an engine on a GPU machine.

Pure functions over the build options: argv lists (tested flag by flag) and their shell
text. The trtexec flags used are documented for TensorRT 10.x's trtexec (TensorRT
"Command-Line Programs" reference: --onnx, --saveEngine, --minShapes/--optShapes/--maxShapes,
--memPoolSize=workspace:, --timingCacheFile, --builderOptimizationLevel,
--hardwareCompatibilityLevel=ampere+, --versionCompatible, --sparsity=enable,
--skipInference, --stronglyTyped). TensorRT 11's migration guide ("Migrating trtexec Usage
from TensorRT 10.x to 11.x") removes every precision flag (--fp16, --int8, --bf16, --fp8,
--int4, --best) and --calib, and makes --stronglyTyped unnecessary (always on): the 11 line
carries none of them; the graph holds the precision.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path

from spartan_deploy.engine.options import BuildOptions, HardwareCompat

POLYGRAPHY_MIN = "0.49"  # --load-inputs/--load-outputs, engine loading by .plan suffix


@dataclasses.dataclass(frozen=True)
class GpuCommands:
    """What to run on the GPU machine, each as an argv list, from the hand-off folder."""

    trtexec_11: list[str]
    trtexec_10: list[str]
    polygraphy_engine: list[str]  # the engine against our reference outputs
    polygraphy_graph: list[str]  # the same check on the graph with ONNX Runtime (here too)
    bench: list[str]
    eval: list[str]

    def to_dict(self) -> dict[str, list[str]]:
        return dataclasses.asdict(self)


def relative(path: Path, folder: Path) -> str:
    """``path`` as written in a command run from ``folder``."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(folder).resolve())
    except ValueError:  # another drive (Windows)
        return str(Path(path).resolve())


def shape_flags(input_name: str, chw: tuple[int, int, int], build: BuildOptions) -> list[str]:
    shapes = build.profile.shapes(chw)
    return [f"--{key}Shapes={input_name}:{'x'.join(str(d) for d in shapes[key])}"
            for key in ("min", "opt", "max")]


def trtexec(graph: str, plan: str, timing_cache: str, input_name: str,
            chw: tuple[int, int, int], build: BuildOptions, major: int) -> list[str]:
    """The trtexec build of ``graph`` into ``plan`` for TensorRT ``major`` (10 or 11)."""
    argv = ["trtexec", f"--onnx={graph}", f"--saveEngine={plan}",
            *shape_flags(input_name, chw, build),
            f"--memPoolSize=workspace:{_mebibytes(build.workspace)}M",
            f"--timingCacheFile={timing_cache}"]
    if major < 11:
        argv.append("--stronglyTyped")  # 10.x: opt in; 11.x: the only mode
    if build.opt_level is not None:
        argv.append(f"--builderOptimizationLevel={build.opt_level}")
    if HardwareCompat(build.hw_compat) is HardwareCompat.AMPERE_PLUS:
        argv.append("--hardwareCompatibilityLevel=ampere+")
    if build.version_compatible:
        argv.append("--versionCompatible")
    if build.sparsity:
        argv.append("--sparsity=enable")
    argv.append("--skipInference")  # build only; Polygraphy and spartan measure afterwards
    return argv


def _mebibytes(size: int) -> int:
    return max(1, -(-size // (1 << 20)))


def polygraphy_check(model: str, inputs: str, outputs: str, atol: float, rtol: float,
                     runtime: str) -> list[str]:
    """``polygraphy run`` of ``model`` on ``runtime`` (``--trt``/``--onnxrt``) against our
    reference outputs with our tolerances."""
    argv = ["polygraphy", "run", model, runtime]
    if runtime == "--trt":
        argv += ["--model-type", "engine"]
    return argv + ["--load-inputs", inputs, "--load-outputs", outputs,
                   "--atol", _number(atol), "--rtol", _number(rtol)]


def _number(value: float) -> str:
    """Rounded up to 3 significant digits: a printed tolerance is never below the measured."""
    text = f"{value:.2e}"
    mantissa, exponent = text.split("e")
    printed = float(text)
    if printed < value:
        printed = (float(mantissa) + 0.01) * 10 ** int(exponent)
    return f"{printed:.3g}"


def spartan_bench(plan: str, build: BuildOptions) -> list[str]:
    profile = build.profile
    batches = sorted({profile.min, profile.opt, profile.max})
    return ["spartan", "bench", plan, "--batch", ",".join(str(b) for b in batches)]


def spartan_eval(plan: str, data: str, build: BuildOptions) -> list[str]:
    batch = min(max(64, build.profile.min), build.profile.max)
    return ["spartan", "eval", plan, "--data", data, "--batch", str(batch)]


def shell(argv: list[str]) -> str:
    return shlex.join(argv)
