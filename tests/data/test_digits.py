"""The built-in digits: fixed disjoint split, statistics, consistency with image files."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from spartan_deploy.data import (
    DIGITS_DATA_CONFIG,
    digit_image,
    digits_labels,
    digits_split,
    open_dataset,
    to_array,
)
from spartan_deploy.errors import DataError
from spartan_deploy.model import resolve_model

REPO = Path(__file__).resolve().parents[2]


def _extract_script():
    spec = importlib.util.spec_from_file_location("extract_digits",
                                                  REPO / "scripts" / "extract_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_is_disjoint_and_covers_everything():
    train, test = digits_split("train"), digits_split("test")
    assert len(np.intersect1d(train, test)) == 0
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(1797))
    assert 0.18 < len(test) / 1797 < 0.22


def test_split_is_stratified():
    labels = digits_labels()
    per_class = np.bincount(labels[digits_split("test")], minlength=10)
    assert per_class.min() >= 30 and per_class.max() <= 40


def test_split_is_the_seeded_one_the_script_draws():
    script = _extract_script()
    train, test = script.stratified_split(digits_labels(), script.SPLIT_SEED,
                                          script.TEST_FRACTION)
    np.testing.assert_array_equal(train, digits_split("train"))
    np.testing.assert_array_equal(test, digits_split("test"))


def test_no_test_image_duplicates_a_train_image():
    images = np.stack([np.asarray(digit_image(i)) for i in range(1797)]).reshape(1797, -1)
    train = {images[i].tobytes() for i in digits_split("train")}
    assert not any(images[i].tobytes() in train for i in digits_split("test"))


def test_unknown_split_is_refused():
    with pytest.raises(DataError, match="unknown digits split 'validation'"):
        open_dataset("digits", DIGITS_DATA_CONFIG, split="validation")


def test_data_config_matches_yaml_and_real_statistics():
    assert resolve_model("spartan-t-digits").data == DIGITS_DATA_CONFIG
    raw = dataclasses.replace(DIGITS_DATA_CONFIG, mean=(0.0,) * 3, std=(1.0,) * 3)
    pixels = np.stack([to_array(digit_image(i), raw) for i in digits_split("train")])
    assert pixels.mean() == pytest.approx(DIGITS_DATA_CONFIG.mean[0], abs=1e-3)
    assert pixels.std() == pytest.approx(DIGITS_DATA_CONFIG.std[0], abs=1e-3)


def test_batches_shape_dtype_and_labels():
    dataset = open_dataset("digits", DIGITS_DATA_CONFIG, split="test")
    assert dataset.labelled and dataset.class_names == tuple("0123456789")
    batches = list(dataset.batches(100))
    assert [len(x) for x, _ in batches] == [100, 100, 100, len(dataset) - 300]
    images, labels = batches[0]
    assert images.shape == (100, 3, 32, 32) and images.dtype == np.float32
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, digits_labels()[digits_split("test")[:100]])
    np.testing.assert_array_equal(images[:, 0], images[:, 2])  # grey replicated


def test_stream_is_the_same_for_any_worker_count():
    dataset = open_dataset("digits", DIGITS_DATA_CONFIG, split="test", limit=50)
    inline = np.concatenate([x for x, _ in dataset.batches(16, workers=0)])
    threaded = np.concatenate([x for x, _ in dataset.batches(16, workers=3)])
    np.testing.assert_array_equal(inline, threaded)


def test_order_is_respected():
    dataset = open_dataset("digits", DIGITS_DATA_CONFIG, split="test", limit=20)
    order = list(reversed(range(20)))
    labels = np.concatenate([y for _, y in dataset.batches(7, order=order)])
    np.testing.assert_array_equal(labels, dataset.labels[order])


def test_limit_is_a_seeded_subset():
    a = open_dataset("digits", DIGITS_DATA_CONFIG, split="test", limit=30, seed=1)
    b = open_dataset("digits", DIGITS_DATA_CONFIG, split="test", limit=30, seed=1)
    c = open_dataset("digits", DIGITS_DATA_CONFIG, split="test", limit=30, seed=2)
    assert a.items == b.items != c.items
    assert set(a.items) <= set(digits_split("test").tolist())
    assert a.items == sorted(a.items)


def test_consumer_may_stop_early():
    dataset = open_dataset("digits", DIGITS_DATA_CONFIG, split="train")
    first = next(iter(dataset.batches(8, workers=2)))
    assert first[0].shape[0] == 8
