"""Model and data configurations: frozen dataclasses, YAML files and the variant registry.

A config uses the official SpaRTAN constructor keys (num_layer, layer_depths, expand_ratios,
dims, init_dim, dropout) plus num_classes, optional per-block widths (set by pruning) and the
data config (input size, normalisation, resize/crop rule).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from spartan_deploy.errors import ConfigError
from spartan_deploy.paths import bundled_models_dir

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_IMG_SIZE = 32
MAX_IMG_SIZE = 4096  # beyond this one image's activations alone outgrow a large machine
# Upper bounds of a model config: far above any published SpaRTAN (depth 12, width 256,
# ratio 4, 21k classes), low enough that a typo (a width of 1e9) is refused by name instead
# of allocating until the machine gives up.
MAX_STAGE_DEPTH = 128
MAX_WIDTH = 16384
MAX_EXPAND_RATIO = 32
MAX_CLASSES = 1_000_000


class ResizeRule(str, enum.Enum):
    """How an image becomes a square input of ``input_size``."""

    SHORTER_THEN_CENTER_CROP = "shorter_then_center_crop"  # official ImageNet evaluation
    STRETCH = "stretch"  # resize both sides, no crop (tiny datasets such as digits)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Preprocessing the model expects. ``resize_size`` applies to the shorter side."""

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize_size: int = 256
    resize_rule: ResizeRule = ResizeRule.SHORTER_THEN_CENTER_CROP
    grayscale: bool = False  # replicate a single grey channel into three

    def __post_init__(self) -> None:
        _validate_data(self)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["resize_rule"] = self.resize_rule.value
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "data config") -> DataConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        _reject_unknown(data, known, where)
        kwargs = dict(data)
        try:
            for key in ("mean", "std"):
                if key in kwargs:
                    kwargs[key] = tuple(float(v) for v in kwargs[key])
                    if len(kwargs[key]) != 3:
                        raise ValueError(f"{key} needs 3 values")
            if "resize_rule" in kwargs:
                kwargs["resize_rule"] = ResizeRule(kwargs["resize_rule"])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {err}") from err
        for key in ("input_size", "resize_size"):
            if key in kwargs and not _is_int(kwargs[key]):
                raise ConfigError(f"{where}: {key} must be an integer, got {kwargs[key]!r}")
        if "input_size" in kwargs and "resize_size" not in kwargs:
            kwargs["resize_size"] = round(kwargs["input_size"] * 256 / 224)
        if "grayscale" in kwargs and not isinstance(kwargs["grayscale"], bool):
            raise ConfigError(f"{where}: grayscale must be true or false, got "
                              f"{kwargs['grayscale']!r}")
        try:
            return cls(**kwargs)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def with_input_size(self, size: int) -> DataConfig:
        """The same preprocessing at another input size (keeping the resize/crop ratio)."""
        ratio = self.resize_size / self.input_size
        return dataclasses.replace(self, input_size=size, resize_size=round(size * ratio))


def _validate_data(cfg: DataConfig) -> None:
    """Sizes within 1..MAX_IMG_SIZE (a model input also needs MIN_IMG_SIZE, checked where
    a model meets it); normalisation finite, std above zero."""
    # The resize before a centre crop is larger than the input (256 for 224).
    for key, largest in (("input_size", MAX_IMG_SIZE), ("resize_size", 2 * MAX_IMG_SIZE)):
        value = getattr(cfg, key)
        if not _is_int(value) or not 1 <= value <= largest:
            raise ConfigError(f"{key} {value!r} is out of range; use 1 to {largest} pixels")
    for key in ("mean", "std"):
        values = getattr(cfg, key)
        if len(values) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                       for v in values):
            raise ConfigError(f"{key} {list(values)!r} must be three finite numbers")
    if any(v <= 0 for v in cfg.std):
        raise ConfigError(f"std {list(cfg.std)!r} must be above zero (images are divided "
                          "by it)")


@dataclasses.dataclass(frozen=True)
class BlockWidths:
    """Inner widths of one block; the unpruned values follow from its width and expand ratio.

    hidden: spatial mixer width (both branches); neck: wave mixer width (whole pairs, >= the
    block width because the argmax gather reads its first C channels); cmixer_groups: groups
    of the wave mixer's 3x3 conv in stages 3-4; *_se: squeeze widths of the SE units.
    """

    hidden: int
    neck: int
    cmixer_groups: int
    h_se: int
    l_se: int
    c_se: int

    @classmethod
    def default(cls, width: int, ratio: int, stage: int) -> BlockWidths:
        hidden, neck = width // 2, width * ratio
        groups = neck if stage < 2 else width
        return cls(hidden, neck, groups, hidden // 4, hidden // 4, width // 4)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A SpaRTAN architecture. Field names follow the official constructor."""

    num_layer: int = 4
    layer_depths: tuple[int, ...] = (3, 3, 12, 2)
    expand_ratios: tuple[int, ...] = (4, 4, 2, 2)
    dims: tuple[int, ...] = (64, 128, 256)
    init_dim: int = 32
    dropout: float = 0.0  # official name: the stochastic-depth (drop-path) rate
    num_classes: int = 1000
    block_widths: tuple[BlockWidths, ...] | None = None  # None: unpruned

    def __post_init__(self) -> None:
        _validate_model(self)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        return (self.init_dim, *self.dims)

    @property
    def num_blocks(self) -> int:
        return sum(self.layer_depths)

    @property
    def is_pruned(self) -> bool:
        return self.block_widths is not None and self.block_widths != self.default_block_widths()

    def default_block_widths(self) -> tuple[BlockWidths, ...]:
        return tuple(
            BlockWidths.default(self.stage_widths[s], self.expand_ratios[s], s)
            for s in range(self.num_layer)
            for _ in range(self.layer_depths[s])
        )

    def resolved_block_widths(self) -> tuple[BlockWidths, ...]:
        return self.block_widths or self.default_block_widths()

    def block_stage(self, block_index: int) -> int:
        """Stage (0-based) of the block with this global index."""
        for stage, end in enumerate(_cumsum(self.layer_depths)):
            if block_index < end:
                return stage
        raise IndexError(block_index)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("layer_depths", "expand_ratios", "dims"):
            data[key] = list(data[key])
        if self.block_widths is None:
            data.pop("block_widths")
        else:
            data["block_widths"] = [dataclasses.asdict(w) for w in self.block_widths]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model config") -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        _reject_unknown(data, known, where)
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name not in data:
                continue
            value = data[field.name]
            kwargs[field.name] = _coerce_model_field(field.name, value, where)
        try:
            return cls(**kwargs)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


_INT_TUPLE_KEYS = ("layer_depths", "expand_ratios", "dims")
_INT_KEYS = ("num_layer", "init_dim", "num_classes")
_FLOAT_KEYS = ("dropout",)


def _coerce_model_field(name: str, value: Any, where: str) -> Any:
    if name in _INT_TUPLE_KEYS:
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
            raise ConfigError(f"{where}: {name} must be a list of integers, got {value!r}")
        return tuple(int(v) for v in value)
    if name in _INT_KEYS:
        if not _is_int(value):
            raise ConfigError(f"{where}: {name} must be an integer, got {value!r}")
        return int(value)
    if name in _FLOAT_KEYS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
        return float(value)
    if name == "block_widths":
        if value is None:
            return None
        try:
            return tuple(BlockWidths(**{k: int(v) for k, v in w.items()}) for w in value)
        except (TypeError, AttributeError, ValueError) as err:
            raise ConfigError(f"{where}: block_widths is malformed ({err})") from err
    return value


def _validate_model(cfg: ModelConfig) -> None:
    if cfg.num_layer != 4:
        raise ConfigError(f"num_layer must be 4 (SpaRTAN has four stages), got {cfg.num_layer}")
    for key, expected in (("layer_depths", 4), ("expand_ratios", 4), ("dims", 3)):
        value = getattr(cfg, key)
        if len(value) != expected:
            raise ConfigError(f"{key} needs {expected} values, got {list(value)}")
    if any(not 1 <= d <= MAX_STAGE_DEPTH for d in cfg.layer_depths):
        raise ConfigError(f"layer_depths must lie in 1..{MAX_STAGE_DEPTH}, got "
                          f"{list(cfg.layer_depths)}")
    if any(w % 8 for w in cfg.stage_widths) or min(cfg.stage_widths) < 8:
        raise ConfigError(f"init_dim and dims must be multiples of 8, got "
                          f"{list(cfg.stage_widths)}")
    if max(cfg.stage_widths) > MAX_WIDTH:
        raise ConfigError(f"init_dim and dims must be at most {MAX_WIDTH}, got "
                          f"{list(cfg.stage_widths)}")
    if any(not 1 <= r <= MAX_EXPAND_RATIO for r in cfg.expand_ratios):
        raise ConfigError(f"expand_ratios must lie in 1..{MAX_EXPAND_RATIO}, got "
                          f"{list(cfg.expand_ratios)}")
    if not 1 <= cfg.num_classes <= MAX_CLASSES:
        raise ConfigError(f"num_classes must lie in 1..{MAX_CLASSES:,}, got {cfg.num_classes}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout (the drop-path rate) must lie in [0, 1), got {cfg.dropout}")
    if cfg.block_widths is not None:
        _validate_block_widths(cfg)


def _validate_block_widths(cfg: ModelConfig) -> None:
    if len(cfg.block_widths or ()) != cfg.num_blocks:
        raise ConfigError(f"block_widths has {len(cfg.block_widths or ())} entries for "
                          f"{cfg.num_blocks} blocks")
    for index, w in enumerate(cfg.block_widths or ()):
        stage = cfg.block_stage(index)
        width = cfg.stage_widths[stage]
        if min(w.hidden, w.h_se, w.l_se, w.c_se, w.cmixer_groups) < 1:
            raise ConfigError(f"block {index}: widths must be positive, got {w}")
        if max(w.hidden, w.neck, w.h_se, w.l_se, w.c_se) > MAX_WIDTH * MAX_EXPAND_RATIO:
            raise ConfigError(f"block {index}: widths must be at most "
                              f"{MAX_WIDTH * MAX_EXPAND_RATIO}, got {w}")
        if w.neck % 2 or w.neck < width:
            raise ConfigError(f"block {index}: neck {w.neck} must be even and at least the "
                              f"block width {width} (the argmax gather reads its first "
                              f"{width} channels)")
        if w.neck % w.cmixer_groups:
            raise ConfigError(f"block {index}: neck {w.neck} is not divisible by "
                              f"cmixer_groups {w.cmixer_groups}")


def _reject_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: "
                          f"{', '.join(sorted(known))}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cumsum(values: tuple[int, ...]) -> list[int]:
    total, out = 0, []
    for v in values:
        total += v
        out.append(total)
    return out


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A named model: architecture plus the data config it was trained with."""

    name: str
    model: ModelConfig
    data: DataConfig
    weights: Path | None = None  # bundled checkpoint, resolved against models/


_REQUIRED_YAML_KEYS = ("layer_depths", "expand_ratios", "dims", "init_dim", "num_classes")


def load_model_yaml(path: str | Path) -> ModelSpec:
    """Read a model YAML: official keys at the top level, a ``data`` section, ``weights``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read model config {str(path)!r}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"model config {str(path)!r} is not valid YAML: "
                          f"{str(err).splitlines()[0]}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"model config {str(path)!r} must be a mapping of keys")
    raw = dict(raw)
    name = str(raw.pop("name", path.stem))
    data = raw.pop("data", {}) or {}
    weights = raw.pop("weights", None)
    for key in _REQUIRED_YAML_KEYS:
        if key not in raw:
            raise ConfigError(f"model config {str(path)!r}: missing key {key!r}")
    model = ModelConfig.from_dict(raw, where=f"model config {str(path)!r}")
    if not isinstance(data, Mapping):
        raise ConfigError(f"model config {str(path)!r}: 'data' must be a mapping of keys")
    data_cfg = DataConfig.from_dict(data, where=f"data section of {str(path)!r}")
    if data_cfg.input_size < MIN_IMG_SIZE:
        raise ConfigError(f"data section of {str(path)!r}: input_size {data_cfg.input_size} "
                          f"is below {MIN_IMG_SIZE}, the network's total stride")
    weights_path = (path.parent / weights) if weights else None
    return ModelSpec(name, model, data_cfg, weights_path)


def known_models() -> dict[str, Path]:
    """Model names bundled in the package's models/ (one YAML each)."""
    folder = bundled_models_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


DEFAULT_MODEL = "spartan-t-digits"


def resolve_model(name_or_path: str | None) -> ModelSpec:
    """A model by bundled name or YAML path; ``None`` means the bundled default."""
    name_or_path = name_or_path or DEFAULT_MODEL
    known = known_models()
    if name_or_path in known:
        return load_model_yaml(known[name_or_path])
    path = Path(name_or_path)
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"model config {name_or_path!r} must be a .yaml or .yml file (the "
                          "official config keys); for weights use --weights")
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"model config {name_or_path!r} does not exist")
        return load_model_yaml(path)
    raise ConfigError(f"unknown model {name_or_path!r}; known models: "
                      f"{', '.join(known) or '(none)'}, or give a YAML file path")
