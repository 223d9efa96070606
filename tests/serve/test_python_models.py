"""The Python-backend model file, in process: its preprocessing must equal the toolkit's
(``spartan_deploy.data.preprocess.to_array``) and its top-k must be the softmax's."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from spartan_deploy.data.preprocess import to_array
from spartan_deploy.model.config import DataConfig, ResizeRule
from spartan_deploy.serve.python_models import model_source
from spartan_deploy.serve.python_models.triton_model import prepare_image, top_k

_CONFIGS = [
    DataConfig(input_size=32, resize_size=32, resize_rule=ResizeRule.STRETCH, grayscale=True,
               mean=(0.3, 0.3, 0.3), std=(0.32, 0.32, 0.32)),
    DataConfig(input_size=48, resize_size=55),  # ImageNet rule: shorter side, centre crop
]


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    grey = Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8), "L")
    rgb = Image.fromarray((rng.random((61, 97, 3)) * 255).astype(np.uint8), "RGB")
    palette = rgb.convert("P")
    return [grey, rgb, palette]


@pytest.mark.parametrize("config", _CONFIGS, ids=["digits-stretch", "imagenet-crop"])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_served_preprocessing_equals_the_toolkits(config, fmt):
    for image in _images():
        if fmt == "JPEG" and image.mode == "P":
            image = image.convert("RGB")
        data = _encoded(image, fmt)
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.load()
            expected = to_array(decoded, config)
        got = prepare_image(data, config.to_dict())
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_top_k_is_the_softmax_ranking():
    logits = np.array([[0.1, 3.0, -1.0, 2.0], [5.0, 5.0, 0.0, -2.0]], dtype=np.float32)
    scores, classes, labels = top_k(logits, 2, ["a", "b", "c", "d"])
    assert classes.tolist() == [[1, 3], [0, 1]]
    assert labels.tolist() == [[b"b", b"d"], [b"a", b"b"]]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(scores, np.take_along_axis(probs, classes, 1), rtol=1e-6)


def test_model_file_imports_no_spartan_at_module_level():
    # In NVIDIA's container spartan is not installed: preprocess/top-k must still load.
    header = model_source().split("class _Classifier")[0]
    assert "import spartan_deploy" not in header and "from spartan_deploy" not in header
