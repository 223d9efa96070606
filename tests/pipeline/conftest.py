"""Pipeline fixtures: a tiny digits checkpoint and a 24-image calibration folder."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_digits_run_inputs


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """(root folder, tiny SpaRTAN checkpoint for digits, 24-image calibration folder)."""
    root = tmp_path_factory.mktemp("pipeline")
    return (root, *tiny_digits_run_inputs(root, 24))
