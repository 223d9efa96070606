"""A tiny SpaRTAN config (seconds to train) for training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_YAML = """\
name: tiny-digits
num_layer: 4
layer_depths: [1, 1, 1, 1]
expand_ratios: [2, 2, 2, 2]
dims: [16, 16, 16]
init_dim: 8
dropout: 0.1
num_classes: 10
"""


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> str:
    path = tmp_path / "tiny-digits.yaml"
    path.write_text(TINY_YAML)
    return str(path)
