"""Surgery: pairs stay whole and aligned, groups stay whole, every sliced tensor is consistent."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spartan_deploy.model.spartan import SpaRTAN, superpose
from spartan_deploy.prune import (
    BlockKeep, NeckLayout, l1_scores, prune_model, pruned_widths, select_channels)
from spartan_deploy.prune.surgery import check_keep


def _plan(model: SpaRTAN, ratio: float) -> tuple[BlockKeep, ...]:
    return select_channels(model.config, pruned_widths(model.config, ratio),
                           l1_scores(model))


def _scattered_plan(model: SpaRTAN) -> tuple[BlockKeep, ...]:
    """Keep every other removable unit (and odd hidden channels): nothing contiguous."""
    keeps = []
    for index, (block, widths) in enumerate(zip(model.blocks(),
                                               model.config.resolved_block_widths())):
        width = model.config.stage_widths[model.config.block_stage(index)]
        layout = NeckLayout.of(width, widths)
        neck = list(range(layout.fixed))
        for unit in layout.units()[1::2]:
            neck.extend(unit)
        odd = lambda n: tuple(range(1, n, 2))  # noqa: E731
        keeps.append(BlockKeep(odd(widths.hidden), tuple(neck), odd(widths.h_se),
                               odd(widths.l_se), odd(widths.c_se)))
    return tuple(keeps)


def _modulated(cmixer, x: torch.Tensor) -> torch.Tensor:
    f = superpose(cmixer.proj(x), F.gelu(cmixer.theta(x)), x)
    return cmixer.modulate(f)


@pytest.mark.parametrize("plan", ["scattered", "l1"])
def test_pair_integrity_modulation_matches_on_kept_pairs(lively_tiny, plan):
    keeps = _scattered_plan(lively_tiny) if plan == "scattered" else _plan(lively_tiny, 0.4)
    pruned = prune_model(lively_tiny, keeps)
    torch.manual_seed(0)
    for before, after, keep in zip(lively_tiny.blocks(), pruned.blocks(), keeps):
        x = torch.randn(2, before.cmixer.theta.in_channels, 6, 6)
        with torch.no_grad():
            full = _modulated(before.cmixer, x)
            cut = _modulated(after.cmixer, x)
        assert cut.shape[1] == len(keep.neck) < full.shape[1]
        torch.testing.assert_close(cut, full[:, list(keep.neck)], rtol=0, atol=1e-6)


def test_group_integrity_grouped_conv_matches_on_kept_groups(grouped4_model):
    model = grouped4_model
    keeps = _plan(model, 0.3)
    pruned = prune_model(model, keeps)
    for index, (before, after, keep) in enumerate(zip(model.blocks(), pruned.blocks(), keeps)):
        per_group = before.cmixer.conv.conv.in_channels // before.cmixer.conv.conv.groups
        kept_groups = sorted({c // per_group for c in keep.neck})
        assert len(kept_groups) * per_group == len(keep.neck), f"block {index}: split group"
        assert after.cmixer.conv.conv.groups == len(kept_groups)
        assert pruned.config.block_widths[index].cmixer_groups == len(kept_groups)
        x = torch.randn(1, before.cmixer.theta.in_channels, 5, 5)
        with torch.no_grad():
            full = before.cmixer.conv(_modulated(before.cmixer, x))
            cut = after.cmixer.conv(_modulated(after.cmixer, x))
        torch.testing.assert_close(cut, full[:, list(keep.neck)], rtol=0, atol=1e-5)
    grouped = [b for b in model.blocks() if 1 < b.cmixer.conv.conv.groups
               < b.cmixer.conv.conv.out_channels]
    assert grouped, "the fixture must contain grouped (not depthwise) wave-mixer convs"


def _silence(model: SpaRTAN, keeps: tuple[BlockKeep, ...]) -> SpaRTAN:
    """The unpruned model with every channel the plan removes forced to exactly zero."""
    silent = SpaRTAN(model.config)
    silent.load_state_dict(model.state_dict())
    with torch.no_grad():
        for block, keep in zip(silent.blocks(), keeps):
            s, c = block.smixer, block.cmixer
            gone = [i for i in range(s.proj_in.out_channels) if i not in keep.hidden]
            for param in (s.proj_in.weight, s.proj_in.bias, s.l_conv[0].conv.weight,
                          s.h_conv.norm.weight, s.h_conv.norm.bias,
                          s.l_conv[1].norm.weight, s.l_conv[1].norm.bias):
                param[gone] = 0
            gone = [i for i in range(c.theta.out_channels) if i not in keep.neck]
            c.conv.norm.weight[gone], c.conv.norm.bias[gone] = 0, 0  # GELU(0) = 0
            for se, kept in ((s.h_attn, keep.h_se), (s.l_attn, keep.l_se),
                             (c.attn, keep.c_se)):
                gone = [i for i in range(se.squeeze.out_channels) if i not in kept]
                se.squeeze.weight[gone], se.squeeze.bias[gone] = 0, 0  # ReLU(0) = 0
    return silent.eval()


@pytest.mark.parametrize("fixture", ["lively_tiny", "grouped4_model"])
def test_pruned_model_equals_unpruned_with_removed_channels_silenced(fixture, request):
    model = request.getfixturevalue(fixture)
    keeps = _scattered_plan(model)
    pruned = prune_model(model, keeps).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = _silence(model, keeps)(x)
        got = pruned(x)
        original = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert (got - original).abs().max() > 1e-3  # the cut channels did matter


def test_neck_keeps_first_c_channels_in_order(lively_tiny):
    keeps = _plan(lively_tiny, 0.9)
    for index, keep in enumerate(keeps):
        width = lively_tiny.config.stage_widths[lively_tiny.config.block_stage(index)]
        assert list(keep.neck[:width]) == list(range(width))
        assert list(keep.neck) == sorted(keep.neck)
        assert all(keep.neck[i] % 2 == 0 and keep.neck[i + 1] == keep.neck[i] + 1
                   for i in range(0, len(keep.neck), 2))


def test_plan_that_splits_a_pair_or_moves_the_prefix_is_refused(lively_tiny):
    good = _scattered_plan(lively_tiny)[0]
    width = lively_tiny.config.init_dim
    split = BlockKeep(good.hidden, good.neck[:-1], good.h_se, good.l_se, good.c_se)
    moved = BlockKeep(good.hidden, tuple(range(1, width + 1)) + good.neck[width + 1:],
                      good.h_se, good.l_se, good.c_se)
    for bad in (split, moved):
        with pytest.raises(ValueError):
            check_keep(lively_tiny.config, (bad,) + _scattered_plan(lively_tiny)[1:])


def test_pruning_twice_composes(lively_tiny):
    once = prune_model(lively_tiny, _plan(lively_tiny, 0.3))
    twice = prune_model(once, _plan(once, 0.3))
    for a, b in zip(once.config.block_widths, twice.config.block_widths):
        assert b.hidden < a.hidden and b.neck <= a.neck
    assert twice(torch.randn(1, 3, 32, 32)).shape == (1, 10)
