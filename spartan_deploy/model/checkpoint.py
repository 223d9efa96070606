"""Checkpoints: read bare state dicts, official training checkpoints and our own format.

Our format is a ``torch.save`` dict that ``weights_only=True`` can read back::

    {"format": "spartan-deploy/1", "config": {...}, "data_config": {...},
     "state_dict": {...}, "metrics": {...}, "meta": {...}}

Official checkpoints (``{"model": state_dict, "config": ..., "optim": ...}``) and bare state
dicts carry no usable config, so the architecture is read back from the tensor shapes.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from spartan_deploy._io import atomic_path, check_output_path, sha256_file
from spartan_deploy.errors import CheckpointError, ConfigError
from spartan_deploy.model.config import BlockWidths, DataConfig, ModelConfig
from spartan_deploy.model.spartan import SpaRTAN, filter_state_dict

FORMAT = "spartan-deploy/1"
_OPTIONAL_KEYS = ("num_batches_tracked",)  # some exporters of state dicts drop these


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds, normalised: config, weights and what we know of it."""

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    data_config: DataConfig | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "state_dict"  # state_dict | official | spartan-deploy
    path: Path | None = None
    sha256: str | None = None

    def build_model(self) -> SpaRTAN:
        """A model in eval mode with these weights loaded (shapes checked first)."""
        check_state_dict(self.state_dict, self.config)
        model = SpaRTAN(self.config)
        model.load_state_dict(self.state_dict, strict=False)
        return model.eval()


def read_checkpoint(path: str | Path, trust: bool = False) -> Checkpoint:
    """Read any supported checkpoint file and infer what it does not state."""
    path = Path(path)
    raw = _torch_load(path, trust)
    checkpoint = _normalise(raw, path)
    _check_finite(checkpoint.state_dict, path)
    return dataclasses.replace(checkpoint, path=path, sha256=sha256_file(path))


def _check_finite(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """NaN or infinite weights make every number computed from them meaningless (an eval
    would still print a top-5): refused when the file is read, naming the first tensor."""
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"checkpoint {str(path)!r}: {key!r} holds {bad} NaN or "
                                  "infinite value(s); the weights are broken (e.g. training "
                                  "diverged); use an earlier checkpoint")


def _torch_load(path: Path, trust: bool) -> Any:
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; check the path (or "
                              "leave out --weights to use the model's bundled weights)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a file")
    _check_container(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        # Only a well-formed pickle that names a class safe loading will not build is
        # "pickled Python objects"; any other refusal (an unknown opcode, a truncated
        # stream) means the bytes are damaged, and --trust-checkpoint would not help.
        if "Unsupported global" in str(err) and not trust:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds pickled Python objects (e.g. an OmegaConf "
                "config) that safe loading refuses; re-save its state dict with "
                "torch.save(torch.load(p, weights_only=False)['model'], 'weights.pt'), "
                "or pass --trust-checkpoint if you trust its source"
            ) from None
        raise _damaged(path) from None
    except MemoryError:
        raise
    except Exception:  # torch.load raises many types on garbage input
        # KeyError and friends carry unhelpful texts (a byte value); the diagnosis is enough.
        raise _damaged(path) from None


# What torch.save writes: a zip archive (since PyTorch 1.6) or, in the legacy format, a
# pickle stream (protocol 2+ opens with 0x80). Anything else is not a checkpoint at all.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


def _check_container(path: Path) -> None:
    """Refuse, before unpickling anything, a file that is neither of torch.save's formats."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(_ZIP_MAGIC):
        import zipfile

        if not zipfile.is_zipfile(path):  # truncated: the central directory is missing
            raise _damaged(path)
        return
    if len(head) < 2 or head[0] != _PICKLE_PROTO:
        raise CheckpointError(f"{str(path)!r} is not a readable PyTorch checkpoint (neither "
                              "the zip archive nor the pickle stream torch.save writes); give "
                              "a file written by torch.save")


def _damaged(path: Path) -> CheckpointError:
    return CheckpointError(f"checkpoint {str(path)!r} is damaged or truncated (its bytes do "
                           "not decode as a torch.save file); copy it again from its source")


def _normalise(raw: Any, path: Path) -> Checkpoint:
    if not isinstance(raw, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(raw).__name__}, not a state dict "
                              "or checkpoint dict")
    if raw.get("format") == FORMAT:
        return _from_ours(raw, path)
    if "model" in raw and isinstance(raw["model"], dict):
        state_dict = _tensor_dict(raw["model"], path)
        source = "official"
    elif "state_dict" in raw and isinstance(raw["state_dict"], dict):
        state_dict = _tensor_dict(raw["state_dict"], path)
        source = "state_dict"
    else:
        state_dict = _tensor_dict(raw, path)
        source = "state_dict"
    state_dict = filter_state_dict(state_dict)
    config = infer_config(state_dict, where=str(path))
    dropout = _official_dropout(raw.get("config"))
    if dropout is not None:
        config = config.replace(dropout=dropout)
    return Checkpoint(config, state_dict, source=source)


def _from_ours(raw: dict[str, Any], path: Path) -> Checkpoint:
    try:
        config = ModelConfig.from_dict(raw["config"], where=f"config in {str(path)!r}")
        data = raw.get("data_config")
        data_config = DataConfig.from_dict(data) if data else None
    except (KeyError, ConfigError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r} has a broken config: {err}") from None
    state_dict = _tensor_dict(raw.get("state_dict", {}), path)
    return Checkpoint(config, state_dict, data_config, dict(raw.get("metrics") or {}),
                      dict(raw.get("meta") or {}), source=FORMAT)


def _tensor_dict(obj: dict[Any, Any], path: Path) -> dict[str, torch.Tensor]:
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
    if not tensors:
        raise CheckpointError(f"{str(path)!r} holds no tensors; it is not a model checkpoint")
    if len(tensors) != len(obj):
        bad = next(k for k, v in obj.items() if not (isinstance(k, str) and torch.is_tensor(v)))
        raise CheckpointError(f"{str(path)!r} is not a state dict: entry {bad!r} is not a tensor")
    return tensors


def _official_dropout(config: Any) -> float | None:
    """The drop-path rate from an official config, when it is a plain mapping."""
    if isinstance(config, dict):
        value = config.get("dropout", config.get("model", {}).get("dropout")
                           if isinstance(config.get("model"), dict) else None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
            return float(value)
    return None


_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")


def infer_config(state_dict: dict[str, torch.Tensor], where: str = "state dict") -> ModelConfig:
    """Read the whole architecture back from tensor shapes (pruned widths included)."""
    shape = _shape_reader(state_dict, where)
    init_dim = shape("conv.1.conv.weight")[0]
    num_classes = shape("linear.weight")[0]
    indices = sorted({int(m.group(1)) for k in state_dict if (m := _LAYER_KEY.match(k))})
    depths, stage_widths, widths, stage_ratios = [0], [init_dim], [], [[]]
    for index in indices:
        prefix = f"layers.{index}."
        kind = _layer_kind(state_dict, prefix)
        if kind == "block":
            width = shape(prefix + "scale_1")[1]
            block = _infer_block_widths(shape, prefix)
            depths[-1] += 1
            widths.append(block)
            stage_ratios[-1].append(block.neck / width)
        elif kind == "downsample":
            stage_widths.append(shape(prefix + "conv.weight")[0])
            depths.append(0)
            stage_ratios.append([])
        else:
            first = next(k for k in state_dict if k.startswith(prefix))
            raise CheckpointError(f"{where}: not a SpaRTAN state dict: key {first!r} is neither "
                                  "a block nor a downsample")
    if len(depths) != 4 or 0 in depths:
        raise CheckpointError(f"{where}: not a SpaRTAN state dict: found stage depths {depths}, "
                              "expected four non-empty stages")
    ratios = tuple(max(1, math.ceil(max(r))) for r in stage_ratios)
    config = ModelConfig(layer_depths=tuple(depths), expand_ratios=ratios,
                         dims=tuple(stage_widths[1:]), init_dim=init_dim,
                         num_classes=num_classes, block_widths=tuple(widths))
    if not config.is_pruned:
        config = config.replace(block_widths=None)
    return config


# Children only a block has, and only a downsample has. A layer is classified by any of its
# keys, so a missing key is reported as missing (by the shape reader) rather than the layer
# being misread and a neighbouring key blamed.
_BLOCK_CHILDREN = ("scale_1.", "scale_2.", "norm_1.", "norm_2.", "smixer.", "cmixer.")
_DOWNSAMPLE_CHILDREN = ("conv.", "norm.")


def _layer_kind(state_dict: dict[str, torch.Tensor], prefix: str) -> str | None:
    rests = [k[len(prefix):] + "." for k in state_dict if k.startswith(prefix)]
    if any(r.startswith(_BLOCK_CHILDREN) for r in rests):
        return "block"
    if any(r.startswith(_DOWNSAMPLE_CHILDREN) for r in rests):
        return "downsample"
    return None


def _shape_reader(state_dict: dict[str, torch.Tensor], where: str):
    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise CheckpointError(f"{where}: not a SpaRTAN state dict: key {key!r} is missing")
        return tuple(state_dict[key].shape)
    return shape


def _infer_block_widths(shape, prefix: str) -> BlockWidths:
    neck = shape(prefix + "cmixer.theta.weight")[0]
    return BlockWidths(
        hidden=shape(prefix + "smixer.proj_in.weight")[0],
        neck=neck,
        cmixer_groups=neck // max(1, shape(prefix + "cmixer.conv.conv.weight")[1]),
        h_se=shape(prefix + "smixer.h_attn.squeeze.weight")[0],
        l_se=shape(prefix + "smixer.l_attn.squeeze.weight")[0],
        c_se=shape(prefix + "cmixer.attn.squeeze.weight")[0],
    )


def check_state_dict(state_dict: dict[str, torch.Tensor], config: ModelConfig) -> None:
    """Raise naming the first key or shape that does not fit a model of ``config``."""
    expected = SpaRTAN(config).state_dict()
    for key, tensor in expected.items():
        if key not in state_dict:
            if key.endswith(_OPTIONAL_KEYS):
                continue
            raise CheckpointError(f"state dict does not fit this SpaRTAN: key {key!r} is missing")
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"state dict does not fit this SpaRTAN: {key!r} has shape "
                f"{list(state_dict[key].shape)}, expected {list(tensor.shape)}")
    extra = next((k for k in state_dict if k not in expected), None)
    if extra is not None:
        raise CheckpointError(f"state dict does not fit this SpaRTAN: unexpected key {extra!r}")


def save_checkpoint(path: str | Path, model: SpaRTAN, data_config: DataConfig | None = None,
                    metrics: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                    force: bool = False) -> Path:
    """Write our checkpoint format atomically (float32 state dict, config, data config)."""
    out = check_output_path(path, force=force)
    state_dict = {k: v.detach().to("cpu").clone() if v.is_floating_point() else v.detach().cpu()
                  for k, v in model.state_dict().items()}
    state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "data_config": data_config.to_dict() if data_config else None,
        "state_dict": state_dict,
        "metrics": metrics or {},
        "meta": meta or {},
    }
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return out
