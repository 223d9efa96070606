"""Checkpoint formats, architecture inference from shapes, and every bad checkpoint input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spartan_deploy.errors import CheckpointError, OutputExistsError
from spartan_deploy.model import (
    BlockWidths, DataConfig, ModelConfig, SpaRTAN, infer_config, load_model, read_checkpoint,
    save_checkpoint)


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_official_checkpoint_with_prefix_infers_architecture(tmp_path, official_fixture, prefix):
    state = {prefix + k: v for k, v in official_fixture["state_dict"].items()}
    path = tmp_path / "official.pth"
    torch.save({"epoch": 299, "config": {"dropout": 0.1}, "model": state, "optim": {},
                "sched": {}, "scaler": {}}, path)
    checkpoint = read_checkpoint(path)
    cfg = official_fixture["config"]
    assert checkpoint.source == "official"
    assert checkpoint.config.layer_depths == tuple(cfg["layer_depths"])
    assert checkpoint.config.dims == tuple(cfg["dims"])
    assert checkpoint.config.init_dim == cfg["init_dim"]
    assert checkpoint.config.expand_ratios == tuple(cfg["expand_ratios"])
    assert checkpoint.config.num_classes == official_fixture["num_classes"]
    assert checkpoint.config.dropout == 0.1
    logits = _logits(checkpoint.build_model(), official_fixture["input"])
    assert (logits - official_fixture["logits"]).abs().max().item() <= 1e-5


def test_bare_state_dict_loads_through_load_model(tmp_path, official_fixture):
    path = tmp_path / "bare.pt"
    torch.save(official_fixture["state_dict"], path)
    loaded = load_model(weights=path)
    logits = _logits(loaded.model, official_fixture["input"])
    assert (logits - official_fixture["logits"]).abs().max().item() <= 1e-5
    assert loaded.weights_sha256 and len(loaded.weights_sha256) == 64


def test_spartan_t_config_inferred_exactly():
    config = ModelConfig()
    assert infer_config(SpaRTAN(config).state_dict()) == config


def test_pruned_widths_inferred_from_shapes():
    base = ModelConfig(layer_depths=(1, 2, 1, 1), num_classes=7)
    widths = list(base.default_block_widths())
    widths[1] = BlockWidths(hidden=20, neck=200, cmixer_groups=200, h_se=5, l_se=3, c_se=9)
    widths[3] = BlockWidths(hidden=40, neck=160, cmixer_groups=80, h_se=7, l_se=10, c_se=30)
    config = base.replace(block_widths=tuple(widths))
    assert infer_config(SpaRTAN(config).state_dict()) == config


def test_our_format_round_trip(tmp_path):
    model = SpaRTAN(ModelConfig(layer_depths=(1, 1, 1, 1), num_classes=4)).eval()
    data = DataConfig(input_size=64, resize_size=64)
    path = save_checkpoint(tmp_path / "ours.pt", model, data, metrics={"top1": 0.5})
    checkpoint = read_checkpoint(path)
    assert checkpoint.config == model.config and checkpoint.data_config == data
    assert checkpoint.metrics == {"top1": 0.5}
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(_logits(checkpoint.build_model(), x), _logits(model, x))
    with pytest.raises(OutputExistsError, match="already exists"):
        save_checkpoint(path, model)
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")


def test_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello, not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(path)


def test_checkpoint_of_non_tensors(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_checkpoint(path)


def test_state_dict_that_is_not_spartan_names_the_key(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(10, 4), "conv1.weight": torch.zeros(4, 3, 7, 7)}, path)
    with pytest.raises(CheckpointError, match="'conv.1.conv.weight' is missing"):
        read_checkpoint(path)


def test_wrong_shape_names_key_and_shapes(tmp_path, official_fixture):
    state = dict(official_fixture["state_dict"])
    state["layers.0.smixer.proj_out.bias"] = torch.zeros(5)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"proj_out.bias' has shape \[5\]"):
        load_model(weights=path)


def test_named_model_checked_against_weights(tmp_path, official_fixture):
    path = tmp_path / "tiny.pt"
    torch.save(official_fixture["state_dict"], path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model("spartan-t", weights=path)


def test_pickled_objects_refused_without_opt_in(tmp_path, official_fixture):
    path = tmp_path / "pickled.pth"
    torch.save({"model": official_fixture["state_dict"],
                "config": _PickledConfig(0.1)}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        read_checkpoint(path)
    trusted = read_checkpoint(path, trust=True)
    assert trusted.config.num_classes == official_fixture["num_classes"]


@dataclasses.dataclass
class _PickledConfig:  # stands in for the OmegaConf object of official checkpoints
    dropout: float
