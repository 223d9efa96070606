"""The bundled default model: loads as the default, was chosen on validation data, and
scores what its card records on the digits test split (>= 98%)."""

from __future__ import annotations

import pytest
import torch

from spartan_deploy.data import DIGITS_DATA_CONFIG, open_dataset
from spartan_deploy.model import load_model, resolve_model
from spartan_deploy.train import evaluate_model

WEIGHTS = resolve_model(None).weights


@pytest.mark.skipif(WEIGHTS is None or not WEIGHTS.is_file(),
                    reason="models/spartan-t-digits.pt is not present")
def test_bundled_default_scores_its_recorded_test_figure():
    loaded = load_model()
    assert loaded.data_config == DIGITS_DATA_CONFIG
    assert loaded.config.num_classes == 10 and loaded.config.dims == (64, 128, 256)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core machine are far slower than one
    try:
        accuracy = evaluate_model(loaded.model, open_dataset("digits", loaded.data_config,
                                                             "test"))
    finally:
        torch.set_num_threads(threads)
    assert accuracy.count == 359
    assert accuracy.top1 >= 0.98
    recorded = loaded.checkpoint.metrics["test_top1"]
    assert accuracy.top1 == pytest.approx(recorded, abs=1e-9)
    assert "--seed" in loaded.checkpoint.meta["command"]
    # Honest selection: the epoch was chosen on validation images held out of training.
    metrics = loaded.checkpoint.metrics
    assert "validation" in metrics["selection"] and metrics["val_count"] > 0
    assert "--val-fraction" in loaded.checkpoint.meta["command"]
    assert all(v.dtype.is_floating_point is False or str(v.dtype) == "torch.float32"
               for v in loaded.checkpoint.state_dict.values())
