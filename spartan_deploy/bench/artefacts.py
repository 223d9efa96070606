"""The default set of things to bench: the default model in every form present or cheap to make.

PyTorch eager always; FP32 ONNX and INT8 ONNX (CPU target) under ``runs/<model>/``, reused
when their manifest still names the model's weights (or the FP32 ONNX they came from), made
with the export/quantize library calls otherwise; TensorRT engines already built there,
only when TensorRT is installed. A form that cannot be made is skipped with a note, so
``spartan bench`` on a fresh machine still measures what it can.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from spartan_deploy._io import read_manifest, sha256_file
from spartan_deploy.errors import SpartanError
from spartan_deploy.model import LoadedModel
from spartan_deploy.paths import RUNS_DIR, bundled_calib_dir
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
    def fp32_onnx(self) -> Path:
        return self.run_dir / "model.onnx"

    @property
    def int8_cpu_onnx(self) -> Path:
        return self.run_dir / "model.int8.cpu.onnx"

    def engines(self) -> list[Path]:
        return sorted(self.run_dir.glob("model*.plan"))


def torch_runner_for(loaded: LoadedModel, options: RunnerOptions) -> TorchRunner:
    """The PyTorch eager runner of a loaded model, carrying its data config."""
    extra = {"input_size": loaded.data_config.input_size, "data_config": loaded.data_config,
             "model": loaded.name, "source_sha256": loaded.weights_sha256}
    return TorchRunner(loaded.model, options, name=f"pytorch-{_device_word(options)} "
                       f"{options.precision.value}", artefact=loaded.weights_path, extra=extra)


def default_runners(loaded: LoadedModel, options: RunnerOptions, runs_dir: Path = RUNS_DIR,
                    note: NoteFn | None = None) -> list[tuple[str, Runner]]:
    """(label, runner) for each form of ``loaded`` that exists or can be made cheaply."""
    note = note or (lambda _msg: None)
    forms = DefaultForms(runs_dir / loaded.name)
    runners: list[tuple[str, Runner]] = [("pytorch eager", torch_runner_for(loaded, options))]
    onnx_path = _attempt(note, "FP32 ONNX", lambda: ensure_fp32_onnx(loaded, forms, note))
    if onnx_path is not None:
        runners.append(("onnx fp32", open_runner(onnx_path, options)))
        int8 = _attempt(note, "INT8 ONNX", lambda: ensure_int8_onnx(loaded, forms, note))
        if int8 is not None:
            runners.append(("onnx int8 (cpu)", open_runner(int8, options)))
    runners.extend(_engine_runners(loaded, forms, options, note))
    return runners


def ensure_fp32_onnx(loaded: LoadedModel, forms: DefaultForms, note: NoteFn) -> Path:
    """``runs/<model>/model.onnx``, exported again only when missing or stale."""
    path = forms.fp32_onnx
    if _is_current(path, loaded.weights_sha256):
        return path
    from spartan_deploy.export import ExportOptions, export_onnx

    note(f"exporting {path} (FP32 ONNX of {loaded.name})")
    result = export_onnx(loaded, path, ExportOptions(), force=True)
    return Path(getattr(result, "path", None) or getattr(result, "output", None) or path)


def ensure_int8_onnx(loaded: LoadedModel, forms: DefaultForms, note: NoteFn) -> Path:
    """``runs/<model>/model.int8.cpu.onnx`` from the FP32 ONNX and the bundled calib/."""
    path = forms.int8_cpu_onnx
    onnx_hash = sha256_file(forms.fp32_onnx)
    if _is_current(path, onnx_hash) or _is_current(path, loaded.weights_sha256):
        return path
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    note(f"quantizing {path} (INT8, CPU target, calibration from {bundled_calib_dir()})")
    result = quantize_onnx(forms.fp32_onnx, bundled_calib_dir(), QuantizeOptions(target=Target.CPU),
                           output=path, force=True)
    return Path(getattr(result, "path", None) or getattr(result, "output", None) or path)


def _engine_runners(loaded: LoadedModel, forms: DefaultForms, options: RunnerOptions,
                    note: NoteFn) -> list[tuple[str, Runner]]:
    if importlib.util.find_spec("tensorrt") is None:
        return []
    runners: list[tuple[str, Runner]] = []
    for plan in forms.engines():
        if not _is_current(plan, loaded.weights_sha256, sha256_of(forms.fp32_onnx)):
            note(f"skipping engine {plan}: built from other weights; rebuild it")
            continue
        runner = _attempt(note, f"engine {plan.name}", lambda p=plan: open_runner(p, options))
        if runner is not None:
            runners.append((f"tensorrt {plan.name.removeprefix('model.')[:-5]}", runner))
    if not runners:
        note(f"TensorRT is installed but {forms.run_dir} holds no current engine; build one "
             "with `spartan build-engine`")
    return runners


def _is_current(path: Path, *hashes: str | None) -> bool:
    """The artefact exists and its manifest records one of ``hashes`` as its source."""
    if not path.is_file():
        return False
    manifest = read_manifest(path)
    wanted = {h for h in hashes if h}
    return bool(manifest) and bool(wanted & set(_hashes_in(manifest)))


def _hashes_in(value: Any) -> Iterator[str]:
    """Every sha256 recorded anywhere in a manifest (schemas differ between stages)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _hashes_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _hashes_in(item)
    elif isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef"
                                                               for c in value):
        yield value


def sha256_of(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _attempt(note: NoteFn, what: str, make: Callable[[], Any]) -> Any:
    """Make an optional form; a failure becomes a note, never the end of the bench."""
    try:
        return make()
    except ImportError as err:
        note(f"{what} skipped: {err.name or err} is not available yet")
    except SpartanError as err:
        note(f"{what} skipped: {err}")
    return None


def _device_word(options: RunnerOptions) -> str:
    from spartan_deploy.runtime.options import resolve_device

    return resolve_device(options.device).value
