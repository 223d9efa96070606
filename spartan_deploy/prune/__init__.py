"""Structured pruning of SpaRTAN that keeps the wave pairs whole, plus 2:4 sparsity.

Width pruning removes whole spatial-mixer hidden channels (both branches), whole complex
pairs (and whole groups where the wave mixer's 3x3 conv is grouped) of the neck beyond its
first C channels, and SE squeeze channels. The residual width stays. The result is an
ordinary SpaRTAN whose ``config.block_widths`` hold the new widths, so it saves, reloads,
exports and quantizes like any other.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Method": "options", "PruneOptions": "options", "Sparsity": "options",
    "FinetuneOptions": "finetuning", "finetune": "finetuning", "top1": "finetuning",
    "l1_scores": "importance", "taylor_scores": "importance",
    "Figures": "pipeline", "PruneResult": "pipeline",
    "StageWidths": "pipeline", "prune": "pipeline", 
    "BlockKeep": "plan", "BlockScores": "plan", "NeckLayout": "plan", "pruned_widths": "plan",
    "select_channels": "plan",
    "macs_at": "search", "ratio_for_macs": "search",
    "SparsityReport": "sparsity", "apply_two_four": "sparsity",
    "is_two_four": "sparsity", "qualifies": "sparsity", "two_four_mask": "sparsity",
    "prune_model": "surgery", "prune_state_dict": "surgery",
})
