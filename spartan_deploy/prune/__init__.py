"""Structured pruning of SpaRTAN that keeps the wave pairs whole, plus 2:4 sparsity.

Width pruning removes whole spatial-mixer hidden channels (both branches), whole complex
pairs (and whole groups where the wave mixer's 3x3 conv is grouped) of the neck beyond its
first C channels, and SE squeeze channels. The residual width stays. The result is an
ordinary SpaRTAN whose ``config.block_widths`` hold the new widths, so it saves, reloads,
exports and quantizes like any other.
"""

from __future__ import annotations

from spartan_deploy.prune.finetune import FinetuneOptions, finetune, top1
from spartan_deploy.prune.importance import Method, l1_scores, taylor_scores
from spartan_deploy.prune.pipeline import (
    Figures, PruneOptions, PruneResult, StageWidths, prune, validate_options)
from spartan_deploy.prune.plan import (
    BlockKeep, BlockScores, NeckLayout, pruned_widths, select_channels)
from spartan_deploy.prune.search import macs_at, ratio_for_macs
from spartan_deploy.prune.sparsity import (
    Sparsity, SparsityReport, apply_two_four, is_two_four, qualifies, two_four_mask)
from spartan_deploy.prune.surgery import prune_model, prune_state_dict

__all__ = [
    "BlockKeep", "BlockScores", "Figures", "FinetuneOptions", "Method", "NeckLayout",
    "PruneOptions", "PruneResult", "Sparsity", "SparsityReport", "StageWidths",
    "apply_two_four", "finetune", "is_two_four", "l1_scores", "macs_at", "prune",
    "prune_model", "prune_state_dict", "pruned_widths", "qualifies", "ratio_for_macs",
    "select_channels", "taylor_scores", "top1", "two_four_mask", "validate_options",
]
