"""The training-form model: official parity, the spartan-t contract, complexity, configs."""

from __future__ import annotations

import json

import pytest
import torch

from spartan_deploy.errors import ConfigError
from spartan_deploy.model import ModelConfig, SpaRTAN, resolve_model
from spartan_deploy.model.complexity import complexity
from spartan_deploy.model.config import BlockWidths
from tests.conftest import GOLDEN, SHARED_FIXTURES


def _manifest() -> dict:
    for path in (SHARED_FIXTURES / "spartan_t_state_dict_manifest.json",
                 GOLDEN / "spartan_t_state_dict_manifest.json"):
        if path.is_file():
            return json.loads(path.read_text())
    pytest.skip("spartan-t manifest absent from shared/ and tests/golden")


def test_official_logits_reproduced(tiny_model, official_fixture):
    with torch.no_grad():
        logits = tiny_model(official_fixture["input"])
    assert (logits - official_fixture["logits"]).abs().max().item() <= 1e-5


def test_spartan_t_keys_and_shapes_match_official_manifest():
    manifest = _manifest()
    model = SpaRTAN(resolve_model("spartan-t").model)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == manifest["state_dict_shapes"]
    assert sum(p.numel() for p in model.parameters()) == manifest["params"] == 3_820_296


@pytest.mark.parametrize(("size", "gmacs"), [(224, 0.80), (256, 1.04)])
def test_spartan_t_macs_within_two_percent(size, gmacs):
    result = complexity(SpaRTAN(resolve_model("spartan-t").model), size)
    assert abs(result.macs / 1e9 - gmacs) / gmacs < 0.02
    assert sum(s.macs for s in result.stages) == result.macs


def test_official_initialisation():
    model = SpaRTAN(ModelConfig())
    block = model.blocks()[0]
    assert torch.all(block.scale_1 == 1e-5) and torch.all(block.smixer.gamma == 1e-5)
    assert torch.all(block.smixer.proj_in.bias == 0)
    conv = block.cmixer.conv.conv  # depthwise 3x3 over 128 channels: fan_out = 9*128/128
    assert abs(conv.weight.std().item() - (2 / 9) ** 0.5) < 0.1
    assert abs(model.linear.weight.std().item() - 0.02) < 0.002


def test_stochastic_depth_rates_grow_linearly():
    model = SpaRTAN(ModelConfig(dropout=0.1))
    rates = [b.drop_path.rate for b in model.blocks()]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1 * 19 / 20)
    assert rates == sorted(rates)


def test_drop_path_only_in_training():
    model = SpaRTAN(ModelConfig(layer_depths=(1, 1, 1, 1), dropout=0.5, num_classes=3))
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_pruned_widths_build_and_run():
    base = ModelConfig(layer_depths=(1, 1, 1, 1), num_classes=5)
    widths = list(base.default_block_widths())
    widths[0] = BlockWidths(hidden=12, neck=96, cmixer_groups=96, h_se=3, l_se=2, c_se=5)
    widths[2] = BlockWidths(hidden=48, neck=160, cmixer_groups=80, h_se=10, l_se=12, c_se=20)
    model = SpaRTAN(base.replace(block_widths=tuple(widths))).eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    assert model.config.is_pruned


@pytest.mark.parametrize(("changes", "message"), [
    ({"layer_depths": (1, 1, 1)}, "layer_depths needs 4"),
    ({"dims": (64, 128, 250)}, "multiples of 8"),
    ({"dropout": 1.5}, "dropout"),
])
def test_invalid_configs_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**changes)


def test_neck_narrower_than_block_rejected():
    base = ModelConfig(layer_depths=(1, 1, 1, 1))
    widths = list(base.default_block_widths())
    widths[0] = BlockWidths(16, 16, 16, 4, 4, 8)  # neck 16 < width 32
    with pytest.raises(ConfigError, match="at least the block width"):
        base.replace(block_widths=tuple(widths))
