"""Sources copied into Triton repositories as ``model.py`` (read with importlib.resources)."""

from __future__ import annotations

from importlib import resources

MODEL_FILE = "triton_model.py"


def model_source() -> str:
    """The text of the one Python-backend model file (every role)."""
    return resources.files(__name__).joinpath(MODEL_FILE).read_text(encoding="utf-8")
