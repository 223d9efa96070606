"""Which models of a repository a given server can run, and why not the others.

The bundled CPU server has only the Python backend: ONNX models run through their
``configs/cpu.pbtxt``, TensorRT engines cannot run, and an ensemble runs when every model
it chains does. A server with native backends runs what its backends cover.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from spartan_deploy.errors import UsageError
from spartan_deploy.serve.errors import ServeError
from spartan_deploy.serve.install import ServerInstall
from spartan_deploy.serve.model_config import (
    CONFIG_NAME, CPU_CONFIG_NAME, CUSTOM_CONFIG_DIR, read_config)

_PLATFORM_BACKENDS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    name: str
    runnable: bool
    reason: str  # why it is skipped ("" when runnable)
    config: Any = dataclasses.field(repr=False, compare=False, default=None)


def plan_models(repository: Path, install: ServerInstall, native: bool) -> list[ModelPlan]:
    """Every model of ``repository`` with whether this server (in this mode) runs it."""
    if not repository.is_dir():
        raise UsageError(f"repository {str(repository)!r} is not a folder; write one with "
                         "spartan triton ARTEFACT -o FOLDER")
    folders = sorted(p for p in repository.iterdir() if (p / CONFIG_NAME).is_file())
    if not folders:
        raise UsageError(f"{str(repository)!r} holds no model (no */config.pbtxt); write a "
                         "repository with spartan triton ARTEFACT -o FOLDER")
    backends = install.backend_names
    configs = {f.name: _config_for(f, native) for f in folders}
    plans = {name: _plan(name, config, backends) for name, config in configs.items()}
    for name, config in configs.items():  # ensembles last: they depend on the others
        if config.platform == "ensemble":
            plans[name] = _plan_ensemble(name, config, plans)
    if not any(p.runnable for p in plans.values()):
        reasons = "; ".join(f"{p.name}: {p.reason}" for p in plans.values())
        raise ServeError(f"no model of {str(repository)!r} can run on {install.describe()} "
                         f"({reasons})")
    return list(plans.values())


def _config_for(folder: Path, native: bool) -> Any:
    cpu = folder / CUSTOM_CONFIG_DIR / f"{CPU_CONFIG_NAME}.pbtxt"
    config = read_config(cpu if not native and cpu.is_file() else folder / CONFIG_NAME)
    if config.name and config.name != folder.name:
        raise ServeError(f"{folder / CONFIG_NAME} names model {config.name!r} but sits in "
                         f"folder {folder.name!r}; Triton needs them equal")
    return config


def _plan(name: str, config: Any, backends: frozenset[str]) -> ModelPlan:
    if config.platform == "ensemble":
        return ModelPlan(name, True, "", config)
    needed = config.backend or _PLATFORM_BACKENDS.get(config.platform, config.platform)
    if needed not in backends:
        return ModelPlan(name, False, f"needs Triton's {needed} backend (NVIDIA's container "
                                      "with a GPU)", config)
    return ModelPlan(name, True, "", config)


def _plan_ensemble(name: str, config: Any, plans: dict[str, ModelPlan]) -> ModelPlan:
    for step in config.ensemble_scheduling.step:
        member = plans.get(step.model_name)
        if member is None:
            return ModelPlan(name, False, f"chains {step.model_name!r}, which is not in the "
                                          "repository", config)
        if not member.runnable:
            return ModelPlan(name, False, f"chains {step.model_name!r}, which cannot run "
                                          "here", config)
    return ModelPlan(name, True, "", config)
