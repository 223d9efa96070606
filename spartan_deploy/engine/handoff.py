"""Hand an engine build and its check to NVIDIA's tools on a GPU machine.

Beside each graph ``build-engine`` makes (``model.fp16.onnx``, ``model.int8.fp16.onnx``,
``model.int8.trt.onnx``) it writes three artefacts, each with its manifest (kind
``reference``, parent the graph):

- ``<graph>.inputs.json``: seeded image batches in Polygraphy's ``--load-inputs`` format;
- ``<graph>.outputs.json``: the graph's outputs on ONNX Runtime for them, a Polygraphy
  ``RunResults`` for ``--load-outputs``, with the tolerances measured here in its manifest;
- ``<graph>.gpu.sh``: the trtexec build (TensorRT 11 and 10.x), the ``polygraphy run``
  check of the engine against those outputs, and ``spartan bench`` / ``spartan eval``.

:func:`gpu_instructions` gives the lines ``build-engine`` prints when TensorRT is absent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spartan_deploy._io import check_output_path, write_text_to
from spartan_deploy._validate import positive_int
from spartan_deploy.engine import commands as cmd
from spartan_deploy.engine.options import BatchProfile, BuildOptions
from spartan_deploy.engine.reference import (
    ReferenceData, Tolerance, make_reference, polygraphy_inputs_json, polygraphy_outputs_json)
from spartan_deploy.errors import UsageError
from spartan_deploy.manifest import (
    ArtefactKind, Manifest, carried_from, manifest_path, parent_of, read_manifest, save_artefact)
from spartan_deploy.precision import Precision

STAGE = "handoff"
DEFAULT_IMAGES = 8  # enough to catch a wrong engine; small files at 224x224 (~5 MB each)
TIMING_CACHE = "timing.cache"


@dataclasses.dataclass(frozen=True)
class Handoff:
    """The hand-off files of one graph and what they tell the GPU machine to run."""

    graph: Path
    plan: Path
    inputs: Path
    outputs: Path
    script: Path
    commands: cmd.GpuCommands
    tolerance: Tolerance

    @property
    def written(self) -> list[Path]:
        return [f for p in (self.inputs, self.outputs, self.script) for f in (p, manifest_path(p))]


def handoff_paths(graph: Path) -> tuple[Path, Path, Path]:
    """``model.fp16.onnx`` -> ``model.fp16.inputs.json``, ``.outputs.json``, ``.gpu.sh``."""
    stem = graph.name[:-len(".onnx")] if graph.name.endswith(".onnx") else graph.stem
    inputs, outputs, script = (graph.with_name(f"{stem}.{suffix}")
                               for suffix in ("inputs.json", "outputs.json", "gpu.sh"))
    return inputs, outputs, script


def check_handoff_outputs(graph: Path, force: bool) -> None:
    """Refuse existing hand-off files without --force (call before any slow step)."""
    for path in handoff_paths(graph):
        for target in (path, manifest_path(path)):
            check_output_path(target, force=force)


def write_handoff(graph: Path, precision: Precision | str, build: BuildOptions,
                  images: np.ndarray, *, plan: Path | None = None, eval_data: str | None = None,
                  force: bool = False, count: int = DEFAULT_IMAGES, seed: int = 0) -> Handoff:
    """Write the hand-off files of ``graph`` (see the module docstring) and return them.

    ``images``: preprocessed float32 NCHW images, calibration or evaluation images, from
    which ``count`` are drawn with ``seed``. ``plan``: where the engine goes (default: the
    graph's name with ``.plan``). ``eval_data``: what ``spartan eval`` scores on there.
    """
    from spartan_deploy.onnx_graph import input_spec, load_onnx

    graph = Path(graph)
    precision = Precision(getattr(precision, "value", precision))
    check_handoff_outputs(graph, force)
    model = load_onnx(graph)
    input_name, dims = input_spec(model)
    chw = _static_chw(graph, dims)
    batch, total = _batching(build.profile, count)
    reference = make_reference(model, images, batch, total, seed)
    plan = Path(plan) if plan is not None else graph.with_suffix(".plan")
    inputs, outputs, script = handoff_paths(graph)
    commands = _commands(graph, plan, inputs, outputs, input_name, chw, build,
                         reference.tolerance, eval_data)
    record = _record(graph, precision, build, reference, commands, batch)
    _save(inputs, polygraphy_inputs_json(reference.feeds), record, "polygraphy-inputs")
    _save(outputs, polygraphy_outputs_json(reference.outputs), record, "polygraphy-outputs")
    _save(script, script_text(graph, plan, script, commands, reference.tolerance), record,
          "gpu-script")
    return Handoff(graph, plan, inputs, outputs, script, commands, reference.tolerance)


def load_handoff(graph: Path, plan: Path) -> Handoff:
    """The :class:`Handoff` of hand-off files already written (read from their manifest)."""
    inputs, outputs, script = handoff_paths(Path(graph))
    recorded = read_manifest(outputs)
    if recorded is None:
        raise UsageError(f"{outputs} has no manifest; write the hand-off files again with "
                         "--force")
    commands = cmd.GpuCommands(**recorded.details["commands"])
    tolerance = {k: v for k, v in recorded.measurements["tolerance"].items()
                 if k in {f.name for f in dataclasses.fields(Tolerance)}}
    return Handoff(Path(graph), Path(plan), inputs, outputs, script, commands,
                   Tolerance(**tolerance))


def _static_chw(graph: Path, dims: list[int | str]) -> tuple[int, int, int]:
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise UsageError(f"graph {str(graph)!r} has input shape {dims}; an engine needs a "
                         "fixed image size (N, 3, H, W): re-export with --img-size")
    return int(dims[1]), int(dims[2]), int(dims[3])


def _batching(profile: BatchProfile, count: int) -> tuple[int, int]:
    """One batch size inside the engine's profile, and a total that is a multiple of it."""
    positive_int(count, "reference image count")
    batch = min(max(min(profile.opt, count), profile.min), profile.max)
    return batch, batch * -(-max(count, batch) // batch)


def _commands(graph: Path, plan: Path, inputs: Path, outputs: Path, input_name: str,
              chw: tuple[int, int, int], build: BuildOptions, tolerance: Tolerance,
              eval_data: str | None) -> cmd.GpuCommands:
    folder = graph.parent
    rel = {k: cmd.relative(p, folder) for k, p in
           {"graph": graph, "plan": plan, "inputs": inputs, "outputs": outputs}.items()}
    cache = cmd.relative(build.timing_cache, folder) if build.timing_cache else TIMING_CACHE
    build_args = (rel["graph"], rel["plan"], cache, input_name, chw, build)
    return cmd.GpuCommands(
        trtexec_11=cmd.trtexec(*build_args, major=11),
        trtexec_10=cmd.trtexec(*build_args, major=10),
        polygraphy_engine=cmd.polygraphy_check(rel["plan"], rel["inputs"], rel["outputs"],
                                               tolerance.atol, tolerance.rtol, "--trt"),
        polygraphy_graph=cmd.polygraphy_check(rel["graph"], rel["inputs"], rel["outputs"],
                                              tolerance.atol, tolerance.rtol, "--onnxrt"),
        bench=cmd.spartan_bench(rel["plan"], build),
        eval=cmd.spartan_eval(rel["plan"], eval_data or "DATA", build))


def _record(graph: Path, precision: Precision, build: BuildOptions, reference: ReferenceData,
            commands: cmd.GpuCommands, batch: int) -> Callable[[Path, str], Manifest]:
    """A manifest factory for the three files (same facts, each its own parent link)."""
    carried = {**carried_from(graph), "config": None}

    def make(path: Path, role: str) -> Manifest:
        return Manifest(
            kind=ArtefactKind.REFERENCE, stage=STAGE, precision=precision,
            parent=parent_of(graph, path), **carried,
            options={"build": build.to_dict(), "images": len(reference.image_indices),
                     "batch": batch, "seed": reference.seed},
            measurements={"tolerance": reference.tolerance.to_dict()},
            details={"role": role, "image_indices": reference.image_indices,
                     "reference_runtime": "onnxruntime CPU, all graph optimisations",
                     "commands": commands.to_dict()})
    return make


def _save(path: Path, text: str, record: Callable[[Path, str], Manifest], role: str) -> None:
    def write(tmp: Path) -> None:
        write_text_to(tmp, text)  # paths that are not UTF-8 stay the bytes they are

    save_artefact(path, write, record(path, role))
    if path.suffix == ".sh":  # executable wherever readable (the umask already applied)
        mode = path.stat().st_mode
        path.chmod(mode | ((mode & 0o444) >> 2))


def script_text(graph: Path, plan: Path, script: Path, commands: cmd.GpuCommands,
                tolerance: Tolerance) -> str:
    """The GPU-machine script: build with the installed TensorRT's trtexec, then check."""
    sh = cmd.shell
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# Build {plan.name} from {graph.name} and check it against the reference outputs",
        "# measured by spartan-deploy (ONNX Runtime CPU). Run on a machine with an NVIDIA GPU,",
        "# TensorRT (trtexec on PATH) and spartan-deploy (which brings Polygraphy):",
        f"#   bash {script.name} [11|10]   (default: the installed tensorrt's major version, "
        "else 11)",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "major=\"${1:-$(python3 -c 'import tensorrt; print(tensorrt.__version__.split(\".\")[0])'"
        " 2>/dev/null || echo 11)}\"",
        'if [ "$major" -ge 11 ]; then',
        "    # TensorRT 11: every network is strongly typed; the graph carries the precision.",
        f"    {sh(commands.trtexec_11)}",
        "else",
        "    # TensorRT 10.12 or newer: strong typing is opted into.",
        f"    {sh(commands.trtexec_10)}",
        "fi",
        f"# The engine must match ONNX Runtime within atol {tolerance.atol:.3g} / rtol "
        f"{tolerance.rtol:.3g} (element-wise: fails where both are exceeded).",
        sh(commands.polygraphy_engine),
        sh(commands.bench),
        sh(commands.eval),
        ""])


def gpu_instructions(handoffs: list[Handoff]) -> list[str]:
    """The lines ``build-engine`` ends with when TensorRT is absent: what to copy where and
    exactly what to run on the GPU machine, for every graph it wrote."""
    if not handoffs:
        return []
    folder = handoffs[0].graph.parent.resolve()
    lines = [f"TensorRT is not installed here. Copy {folder} to a machine with an NVIDIA GPU, "
             "TensorRT and spartan-deploy, then run there, from that folder:"]
    for handoff in handoffs:
        c = handoff.commands
        lines += [f"  # {handoff.plan.name}: bash {handoff.script.name}, which runs:",
                  f"  {cmd.shell(c.trtexec_11)}",
                  f"  #   (TensorRT 10.12+: {cmd.shell(c.trtexec_10)})",
                  f"  {cmd.shell(c.polygraphy_engine)}",
                  f"  {cmd.shell(c.bench)}",
                  f"  {cmd.shell(c.eval)}"]
    return lines
