"""The default set of things to bench: the default model in every form already made.

PyTorch eager always; the FP32 ONNX, the CPU-target INT8 ONNX and (with TensorRT) the
engines under ``runs/<model>/`` when their manifests say they descend from the model's
weights. Nothing is made here: making forms is the one orchestration's job (``spartan
pipeline``, ``spartan export``/``quantize``/``build-engine``), and a note says which to run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

from spartan_deploy.errors import SpartanError
from spartan_deploy.manifest import lineage
from spartan_deploy.model import LoadedModel
from spartan_deploy.paths import RUNS_DIR
from spartan_deploy.runtime.base import Runner
from spartan_deploy.runtime.options import RunnerOptions
from spartan_deploy.runtime.select import open_runner
from spartan_deploy.runtime.torch_runner import TorchRunner

NoteFn = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DefaultForms:
    """Where the default forms of a model live."""

    run_dir: Path

    @property
    def onnx(self) -> list[tuple[str, Path]]:
        return [("onnx fp32", self.run_dir / "model.onnx"),
                ("onnx int8 (cpu)", self.run_dir / "model.int8.cpu.onnx")]

    def engines(self) -> list[Path]:
        return sorted(self.run_dir.glob("model*.plan"))


def torch_runner_for(loaded: LoadedModel, options: RunnerOptions) -> TorchRunner:
    """The PyTorch eager runner of a loaded model, carrying its data config."""
    extra = {"input_size": loaded.data_config.input_size, "data_config": loaded.data_config,
             "model": loaded.name, "checkpoint_sha256": loaded.weights_sha256}
    return TorchRunner(loaded.model, options, name=f"pytorch-{_device_word(options)} "
                       f"{options.precision.value}", artefact=loaded.weights_path, extra=extra)


def default_runners(loaded: LoadedModel, options: RunnerOptions, runs_dir: Path = RUNS_DIR,
                    note: NoteFn | None = None) -> list[tuple[str, Runner]]:
    """(label, runner) for each form of ``loaded`` that is already made and current."""
    note = note or (lambda _msg: None)
    forms = DefaultForms(runs_dir / loaded.name)
    runners: list[tuple[str, Runner]] = [("pytorch eager", torch_runner_for(loaded, options))]
    for label, path in forms.onnx:
        if descends_from(path, loaded.weights_sha256):
            runners.append((label, open_runner(path, options)))
        else:
            note(f"{path} is missing or not made from these weights: make it with `spartan "
                 "pipeline` (every form) or `spartan export` / `spartan quantize`")
    if importlib.util.find_spec("tensorrt") is not None:
        runners.extend(_engine_runners(loaded, forms, options, note))
    return runners


def descends_from(path: Path, checkpoint_sha256: str | None) -> bool:
    """The artefact exists with a manifest, every file of its lineage is as recorded, and
    that checkpoint is on it (a pruned checkpoint included)."""
    if not path.is_file() or checkpoint_sha256 is None:
        return False
    try:
        steps = lineage(path)
    except SpartanError:
        return False
    return (steps[0].manifest is not None and all(step.ok for step in steps)
            and any(step.actual_sha256 == checkpoint_sha256 for step in steps[1:]))


def _engine_runners(loaded: LoadedModel, forms: DefaultForms, options: RunnerOptions,
                    note: NoteFn) -> list[tuple[str, Runner]]:
    runners: list[tuple[str, Runner]] = []
    for plan in forms.engines():
        if not descends_from(plan, loaded.weights_sha256):
            note(f"skipping engine {plan}: not built from these weights; rebuild it")
            continue
        try:
            runners.append((f"tensorrt {plan.name.removeprefix('model.')[:-5]}",
                            open_runner(plan, options)))
        except SpartanError as err:
            note(f"engine {plan.name} skipped: {err}")
    if not runners:
        note(f"TensorRT is installed but {forms.run_dir} holds no current engine; build one "
             "with `spartan build-engine`")
    return runners


def _device_word(options: RunnerOptions) -> str:
    from spartan_deploy.runtime.options import resolve_device

    return resolve_device(options.device).value
