"""``load_model``: resolve --model/--weights into a ready model, the way every command does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from spartan_deploy.errors import CheckpointError, UsageError
from spartan_deploy.model.checkpoint import Checkpoint, check_state_dict, read_checkpoint
from spartan_deploy.model.config import MIN_IMG_SIZE, DataConfig, ModelConfig, resolve_model
from spartan_deploy.model.spartan import SpaRTAN, create_model


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A ready model and everything later stages record about where it came from."""

    name: str
    model: SpaRTAN
    data_config: DataConfig
    checkpoint: Checkpoint | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def weights_sha256(self) -> str | None:
        return self.checkpoint.sha256 if self.checkpoint else None

    @property
    def weights_path(self) -> Path | None:
        return self.checkpoint.path if self.checkpoint else None


def load_model(model: str | None = None, weights: str | Path | None = None,
               trust_checkpoint: bool = False, allow_random: bool = False) -> LoadedModel:
    """Resolve ``--model``/``--weights`` the way every command does.

    - only ``weights``: architecture from the checkpoint (stated or inferred from shapes);
    - ``model`` and ``weights``: the named architecture, checked against the weights;
    - only ``model`` (or neither: the bundled default): its bundled weights if it has
      them, random official initialisation when ``allow_random``, an error otherwise.
    """
    if weights is not None:
        checkpoint = read_checkpoint(weights, trust=trust_checkpoint)
        spec = resolve_model(model) if model else None
        config = spec.model if spec else checkpoint.config
        if spec is not None:
            check_state_dict(checkpoint.state_dict, config)
            checkpoint = dataclasses.replace(checkpoint, config=config)
        data_config = checkpoint.data_config or (spec.data if spec else DataConfig())
        name = spec.name if spec else Path(weights).stem
        return LoadedModel(name, checkpoint.build_model(), data_config, checkpoint)
    spec = resolve_model(model)
    if spec.weights is not None and spec.weights.is_file():
        checkpoint = read_checkpoint(spec.weights)
        check_state_dict(checkpoint.state_dict, spec.model)
        checkpoint = dataclasses.replace(checkpoint, config=spec.model)
        return LoadedModel(spec.name, checkpoint.build_model(),
                           checkpoint.data_config or spec.data, checkpoint)
    if spec.weights is not None and not allow_random:
        raise CheckpointError(f"bundled weights {str(spec.weights)!r} of model {spec.name!r} "
                              "are missing; give --weights PATH")
    if not allow_random:
        raise UsageError(f"model {spec.name!r} has no bundled weights; give --weights PATH")
    return LoadedModel(spec.name, create_model(spec.model).eval(), spec.data, None)


def validate_img_size(size: int | None) -> int | None:
    """Input sizes below 32 leave nothing after the network's total stride of 32."""
    if size is not None and size < MIN_IMG_SIZE:
        raise UsageError(f"--img-size {size} is too small; use {MIN_IMG_SIZE} or more")
    return size
