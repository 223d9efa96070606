"""What to train: the model (fresh or from ``--weights``, with a new head when needed) and
the train/test datasets with the data config that goes with them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from spartan_deploy.data import DIGITS_DATA_CONFIG, Dataset, open_dataset
from spartan_deploy.data.dataset import is_builtin, split_validation
from spartan_deploy.errors import DataError
from spartan_deploy.model import (
    Checkpoint,
    DataConfig,
    ModelConfig,
    SpaRTAN,
    check_state_dict,
    create_model,
    read_checkpoint,
    resolve_model,
    validate_img_size,
)
from spartan_deploy.train.options import TrainOptions


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    name: str
    model: SpaRTAN
    data_config: DataConfig
    train: Dataset  # the training split minus the validation part
    val: Dataset  # seeded share of the training split: chooses the best epoch
    test: Dataset
    source: Checkpoint | None  # the --weights it started from
    new_head: bool


def data_config_for(data: str | Path, model_data: DataConfig | None,
                    img_size: int | None) -> DataConfig:
    """Digits bring their own preprocessing; other data uses the model's (or ImageNet's)."""
    config = DIGITS_DATA_CONFIG if is_builtin(data) else (model_data or DataConfig())
    validate_img_size(img_size)
    return config.with_input_size(img_size) if img_size else config


def open_splits(data: str | Path, data_config: DataConfig,
                options: TrainOptions) -> tuple[Dataset, Dataset, Dataset]:
    """(train, validation, test): validation is held out of the training split."""
    train = open_dataset(data, data_config, "train", options.limit, options.seed)
    test = open_dataset(data, data_config, "test", options.eval_limit, options.seed)
    if not is_builtin(data) and train.name == test.name:
        raise DataError(f"folder {str(data)!r} needs train/ and val/ (or test/) sub-folders, "
                        "each with one sub-folder per class, to train and evaluate")
    for dataset in (train, test):
        if not dataset.labelled:
            raise DataError(f"{dataset.name!r} has no class sub-folders; training needs "
                            "labelled images")
    if train.class_names != test.class_names:
        raise DataError(f"train and test classes differ ({len(train.class_names)} vs "
                        f"{len(test.class_names)} folders); give both the same class folders")
    fit, val = split_validation(train, options.val_fraction, options.seed)
    return fit, val, test


def build_setup(model: str | None, data: str | Path, options: TrainOptions,
                weights: str | Path | None = None, trust_checkpoint: bool = False) -> TrainSetup:
    """Resolve model, weights and data; the model's seed-dependent init happens here."""
    spec = resolve_model(model) if (model or weights is None) else None
    source = read_checkpoint(weights, trust=trust_checkpoint) if weights is not None else None
    model_data = (source.data_config if source and source.data_config else None) or \
        (spec.data if spec else None)
    data_config = data_config_for(data, model_data, options.img_size)
    train, val, test = open_splits(data, data_config, options)
    classes = len(train.class_names)
    torch.manual_seed(options.seed)  # model initialisation (and a new head) from the seed
    if source is None and spec is not None:
        net = create_model(spec.model.replace(num_classes=classes))
        return TrainSetup(spec.name, net, data_config, train, val, test, None, False)
    config = _source_config(source, spec.model if spec else None)
    net, new_head = _from_weights(source, config, classes)
    name = spec.name if spec else Path(weights).stem  # type: ignore[arg-type]
    return TrainSetup(name, net, data_config, train, val, test, source, new_head)


def _source_config(source: Checkpoint, named: ModelConfig | None) -> ModelConfig:
    """The named architecture (checked against the weights, head aside) or the weights' own."""
    if named is None:
        return source.config
    config = named.replace(num_classes=source.config.num_classes)
    check_state_dict(source.state_dict, config)
    return config


def _from_weights(source: Checkpoint, config: ModelConfig,
                  classes: int) -> tuple[SpaRTAN, bool]:
    """Load the weights; a different class count gets a freshly initialised head."""
    check_state_dict(source.state_dict, config)
    new_head = config.num_classes != classes
    net = create_model(config.replace(num_classes=classes))
    state = {k: v for k, v in source.state_dict.items()
             if not (new_head and k.startswith("linear."))}
    net.load_state_dict(state, strict=False)
    return net, new_head
