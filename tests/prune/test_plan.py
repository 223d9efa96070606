"""Widths for a ratio, the MAC search, importance scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spartan_deploy.errors import UsageError
from spartan_deploy.model import ModelConfig, SpaRTAN
from spartan_deploy.model.complexity import complexity
from spartan_deploy.prune import (
    NeckLayout, l1_scores, macs_at, pruned_widths, ratio_for_macs, taylor_scores)


def test_widths_shrink_with_the_ratio_and_respect_the_neck_floor(tiny_config):
    previous = tiny_config.resolved_block_widths()
    for ratio in (0.1, 0.3, 0.6, 0.95):
        widths = pruned_widths(tiny_config, ratio)
        for index, (old, new) in enumerate(zip(previous, widths)):
            width = tiny_config.stage_widths[tiny_config.block_stage(index)]
            assert new.hidden <= old.hidden and new.neck <= old.neck
            assert new.neck >= width and new.neck % 2 == 0
            assert new.neck % new.cmixer_groups == 0
            assert min(new.hidden, new.h_se, new.l_se, new.c_se) >= 1
        previous = widths
    assert [w.neck for w in pruned_widths(tiny_config, 0.95)] == [
        tiny_config.stage_widths[tiny_config.block_stage(i)]
        for i in range(tiny_config.num_blocks)]


def test_channels_per_group_is_kept(tiny_config):
    for index, (old, new) in enumerate(zip(tiny_config.resolved_block_widths(),
                                           pruned_widths(tiny_config, 0.4))):
        assert old.neck // old.cmixer_groups == new.neck // new.cmixer_groups


def test_neck_layout_units_are_whole_pairs_and_groups():
    from spartan_deploy.model.config import BlockWidths
    layout = NeckLayout.of(64, BlockWidths(32, 192, 64, 8, 8, 16))  # 3 channels per group
    assert layout.unit == 6 and layout.fixed == 66
    assert all(len(u) == 6 and u.start % 6 == 0 for u in layout.units())


def test_ratio_03_removes_about_a_quarter_of_spartan_t_params():
    config = ModelConfig(num_classes=10)
    before = complexity(SpaRTAN(config), 32).params
    after = complexity(SpaRTAN(config.replace(block_widths=pruned_widths(config, 0.3))),
                       32).params
    assert 0.25 <= 1 - after / before <= 0.35


def test_target_macs_search_lands_at_or_below_the_target(tiny_config):
    full = macs_at(tiny_config, 0.0, 64, 8)
    target = int(full * 0.7)
    ratio = ratio_for_macs(tiny_config, target, 64, 8)
    assert 0 < ratio < 1
    assert macs_at(tiny_config, ratio, 64, 8) <= target
    assert macs_at(tiny_config, max(0.0, ratio - 0.02), 64, 8) > target * 0.97


@pytest.mark.parametrize("factor", [1.0, 1.5])
def test_target_macs_not_below_the_model_is_refused(tiny_config, factor):
    full = macs_at(tiny_config, 0.0, 64, 8)
    with pytest.raises(UsageError, match="--target-macs"):
        ratio_for_macs(tiny_config, int(full * factor), 64, 8)


def test_unreachable_target_macs_is_refused(tiny_config):
    with pytest.raises(UsageError, match="out of reach"):
        ratio_for_macs(tiny_config, 1000, 64, 8)


def test_l1_scores_cover_every_channel(lively_tiny):
    for block, score in zip(lively_tiny.blocks(), l1_scores(lively_tiny)):
        assert score.hidden.shape == (block.smixer.proj_in.out_channels,)
        assert score.neck.shape == (block.cmixer.theta.out_channels,)
        assert score.c_se.shape == (block.cmixer.attn.squeeze.out_channels,)
        assert torch.isfinite(score.neck).all() and (score.neck > 0).all()


def test_l1_ranks_a_dead_channel_last(lively_tiny):
    block = lively_tiny.blocks()[0]
    with torch.no_grad():
        block.smixer.proj_in.weight[3] = 0
        block.smixer.proj_out.weight[:, 3] = 0
        block.smixer.h_conv.conv.weight[3] = 0
    score = l1_scores(lively_tiny)[0].hidden
    assert int(score.argmin()) == 3


def test_taylor_scores_are_finite_and_leave_the_model_unchanged(lively_tiny):
    before = {k: v.clone() for k, v in lively_tiny.state_dict().items()}
    images = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    scores = taylor_scores(lively_tiny, [images[:4], images[4:]])
    assert len(scores) == len(lively_tiny.blocks())
    assert all(torch.isfinite(s.neck).all() and s.neck.sum() > 0 for s in scores)
    after = lively_tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not lively_tiny.training
    x = torch.randn(1, 3, 32, 32)
    assert lively_tiny(x).shape == (1, 10)  # no gate hook left behind
    assert not any(m._forward_hooks for m in lively_tiny.modules())
