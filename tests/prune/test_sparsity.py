"""2:4 masks: valid pattern, magnitude choice, qualification verdicts, held through training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spartan_deploy.data import open_dataset
from spartan_deploy.model import ModelConfig, SpaRTAN
from spartan_deploy.prune import (
    FinetuneOptions, apply_two_four, finetune, is_two_four, qualifies, two_four_mask)


def test_mask_keeps_the_two_largest_of_every_four_input_channels():
    weight = torch.randn(8, 16, 3, 3)
    mask = two_four_mask(weight)
    quads = mask.permute(0, 2, 3, 1).reshape(-1, 4)
    assert (quads.sum(dim=1) == 2).all()
    mags = weight.abs().permute(0, 2, 3, 1).reshape(-1, 4)
    kept = torch.where(quads, mags, torch.inf).min(dim=1).values
    dropped = torch.where(~quads, mags, -torch.inf).max(dim=1).values
    assert (kept >= dropped).all()
    assert is_two_four(weight * mask) and not is_two_four(weight)


def test_pattern_runs_along_input_channels_not_output_channels():
    along_inputs = torch.zeros(4, 4, 1, 1)
    along_inputs[0, :3] = 1.0  # output 0 reads three of its four inputs
    along_outputs = torch.zeros(4, 4, 1, 1)
    along_outputs[:3, 0] = 1.0  # three outputs read input 0: one non-zero per quad
    assert not is_two_four(along_inputs)
    assert is_two_four(along_outputs)


@pytest.mark.parametrize(("conv", "gate", "ok", "words"), [
    (nn.Conv2d(64, 128, 1), False, True, "2:4"),
    (nn.Conv2d(64, 64, 3, groups=64), False, False, "depthwise"),
    (nn.Conv2d(64, 64, 3, groups=32), False, False, "grouped"),
    (nn.Conv2d(48, 64, 1), False, False, "input channels"),
    (nn.Conv2d(64, 40, 1), False, False, "output channels"),
    (nn.Conv2d(64, 64, 1), True, False, "squeeze-excitation"),
])
def test_qualification(conv, gate, ok, words):
    verdict, reason = qualifies(conv, gate)
    assert verdict is ok and words in reason


def _model() -> SpaRTAN:
    torch.manual_seed(0)
    return SpaRTAN(ModelConfig(layer_depths=(1, 1, 1, 1), dims=(64, 128, 128), init_dim=32,
                               num_classes=10)).eval()


def test_apply_masks_exactly_the_qualifying_convs():
    model = _model()
    masks, report = apply_two_four(model)
    convs = dict((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert {layer.name for layer in report.layers} == set(convs)
    assert set(report.sparse_layers) == {name[:-len(".weight")] for name in masks}
    assert report.sparse_layers and len(report.sparse_layers) < len(convs)
    for layer in report.layers:
        weight = convs[layer.name].weight
        if layer.sparse:
            assert is_two_four(weight)
            assert (weight == 0).float().mean() == pytest.approx(0.5, abs=0.01)
        else:
            assert layer.reason != "2:4"
    dense = {"conv.0.conv", "layers.0.smixer.h_conv.conv"}  # stem (3 inputs), 16 channels
    assert not dense & set(report.sparse_layers)
    assert "layers.0.cmixer.proj_out" in report.sparse_layers  # 128 -> 32, 1x1 dense


def test_masks_hold_through_fine_tuning():
    model = _model()
    masks, report = apply_two_four(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = open_dataset("digits", _data_config(), split="train", limit=64)
    finetune(model, data, FinetuneOptions(epochs=1, lr=1e-3, batch_size=32), masks)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert is_two_four(params[name])
        assert torch.equal(params[name] == 0, ~mask)
        assert not torch.equal(params[name], before[name])  # it did train


def _data_config():
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    return DIGITS_DATA_CONFIG


def test_hold_masks_keeps_zeros_through_adamw_steps():
    from spartan_deploy.prune.sparsity import hold_masks
    conv = nn.Conv2d(32, 32, 1)
    mask = two_four_mask(conv.weight)
    with torch.no_grad():
        conv.weight.mul_(mask)
    handles = hold_masks(conv, {"weight": mask})
    optimizer = torch.optim.AdamW(conv.parameters(), lr=0.1, weight_decay=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        conv(torch.randn(4, 32, 5, 5)).square().mean().backward()
        optimizer.step()
    assert torch.equal(conv.weight == 0, ~mask)
    for handle in handles:
        handle.remove()
    optimizer.zero_grad()
    conv(torch.randn(4, 32, 5, 5)).square().mean().backward()
    optimizer.step()
    assert not is_two_four(conv.weight)  # without the hooks the zeros would move
