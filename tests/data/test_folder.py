"""Image folders: layouts, formats, preprocessing rules and every bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spartan_deploy.data import DIGITS_DATA_CONFIG, open_dataset, to_array
from spartan_deploy.errors import DataError, UsageError
from spartan_deploy.model import DataConfig, ResizeRule

from .conftest import corrupt, truncated, write_digit


def test_class_folder_labels_follow_sorted_names(class_folder: Path):
    dataset = open_dataset(class_folder, DIGITS_DATA_CONFIG, split="train")
    assert dataset.class_names == ("0", "1", "2") and len(dataset) == 18
    labels = np.concatenate([y for _, y in dataset.batches(5)])
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 6))


def test_split_sub_folders_are_chosen(class_folder: Path):
    assert len(open_dataset(class_folder, DIGITS_DATA_CONFIG, split="test")) == 9
    assert len(open_dataset(class_folder / "val", DIGITS_DATA_CONFIG)) == 9


def test_flat_folder_is_unlabelled_and_ignores_other_files(flat_folder: Path):
    dataset = open_dataset(flat_folder, DIGITS_DATA_CONFIG)
    assert not dataset.labelled and len(dataset) == 5
    batches = list(dataset.batches(4))
    assert [b[1] for b in batches] == [None, None]
    assert batches[0][0].shape == (4, 3, 32, 32)


def test_all_formats_decode(flat_folder: Path):
    suffixes = {Path(str(p)).suffix for p in open_dataset(flat_folder, DIGITS_DATA_CONFIG).items}
    assert suffixes == {".png", ".jpg", ".bmp", ".webp"}
    images = np.concatenate([x for x, _ in open_dataset(flat_folder,
                                                        DIGITS_DATA_CONFIG).batches(8)])
    assert np.isfinite(images).all() and images.std() > 0.5


def test_empty_folder(tmp_path: Path):
    with pytest.raises(DataError, match="holds no images"):
        open_dataset(tmp_path, DIGITS_DATA_CONFIG)


def test_folder_without_image_files(tmp_path: Path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        open_dataset(tmp_path, DIGITS_DATA_CONFIG)


def test_no_readable_image_fails_at_open(tmp_path: Path):
    corrupt(tmp_path / "a.png")
    corrupt(tmp_path / "b.jpg")
    with pytest.raises(DataError, match="none of its 2 image files can be read"):
        open_dataset(tmp_path, DIGITS_DATA_CONFIG)


def test_only_truncated_images_fail_at_end_of_stream(tmp_path: Path):
    truncated(tmp_path / "a.png", 0)
    dataset = open_dataset(tmp_path, DIGITS_DATA_CONFIG)
    with pytest.raises(DataError, match="none of its 1 images could be read"):
        list(dataset.batches(4))
    assert dataset.skipped == 1


def test_corrupt_image_among_good_ones_is_skipped_and_counted(class_folder: Path):
    corrupt(class_folder / "val" / "1" / "zz_bad.png")
    truncated(class_folder / "val" / "2" / "zz_cut.png", 5)
    dataset = open_dataset(class_folder, DIGITS_DATA_CONFIG, split="test")
    assert len(dataset) == 11
    labels = np.concatenate([y for _, y in dataset.batches(4, workers=2)])
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 3))
    assert dataset.skipped == 2
    assert any("zz_bad.png" in f for f in dataset.skipped_files)
    list(dataset.batches(4))  # a second pass counts the same files once
    assert dataset.skipped == 2 and dataset.description["skipped"] == 2


def test_unknown_dataset_name(tmp_path: Path):
    with pytest.raises(DataError, match="'mnist' is neither a built-in dataset"):
        open_dataset("mnist", DIGITS_DATA_CONFIG)


def test_file_instead_of_folder(tmp_path: Path):
    image = write_digit(tmp_path / "one.png", 0)
    with pytest.raises(DataError, match="is a file, not a folder"):
        open_dataset(image, DIGITS_DATA_CONFIG)


def test_images_mixed_with_class_folders(class_folder: Path):
    write_digit(class_folder / "train" / "stray.png", 0)
    with pytest.raises(DataError, match="mixes images"):
        open_dataset(class_folder / "train", DIGITS_DATA_CONFIG)


def test_bad_batch_size_and_limit(flat_folder: Path):
    with pytest.raises(UsageError):
        list(open_dataset(flat_folder, DIGITS_DATA_CONFIG).batches(0))
    with pytest.raises(UsageError):
        open_dataset(flat_folder, DIGITS_DATA_CONFIG, limit=0)


def test_shorter_side_then_centre_crop():
    config = DataConfig(input_size=16, resize_size=20, mean=(0, 0, 0), std=(1, 1, 1))
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 38:42] = 255  # a vertical bar in the middle survives the centre crop
    out = to_array(Image.fromarray(wide), config)
    assert out.shape == (3, 16, 16)
    assert out[:, :, 7:9].mean() > 0.5 and out[:, :, :4].max() == 0


def test_stretch_keeps_the_whole_image():
    config = DataConfig(input_size=16, resize_size=16, resize_rule=ResizeRule.STRETCH,
                        mean=(0, 0, 0), std=(1, 1, 1))
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :10] = 255  # the left edge would be cropped away by a centre crop
    out = to_array(Image.fromarray(wide), config)
    assert out.shape == (3, 16, 16) and out[:, :, 0].min() > 0.9 and out[:, :, 8:].max() == 0


def test_grey_and_colour_handling():
    colour = Image.fromarray(np.full((8, 8, 3), (255, 0, 0), np.uint8))
    plain = DataConfig(input_size=8, resize_size=8, resize_rule=ResizeRule.STRETCH,
                       mean=(0, 0, 0), std=(1, 1, 1))
    rgb = to_array(colour, plain)
    assert rgb[0].min() == 1.0 and rgb[1].max() == 0.0
    grey = to_array(colour, dataclasses.replace(plain, grayscale=True))
    np.testing.assert_array_equal(grey[0], grey[1])
    assert 0.2 < grey[0, 0, 0] < 0.4  # luminance of pure red
    single = to_array(Image.fromarray(np.full((8, 8), 128, np.uint8)), plain)
    assert single.shape == (3, 8, 8) and np.allclose(single, 128 / 255)
