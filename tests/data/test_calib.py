"""The bundled calib/ folder: manifest matches the files, train split only, regenerable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spartan_deploy._io import sha256_file
from spartan_deploy.paths import bundled_calib_dir
from spartan_deploy.data import DIGITS_DATA_CONFIG, digits_split, load_calibration, open_dataset
from spartan_deploy.data.calib import (
    MANIFEST_NAME,
    check_calibration,
    make_digits_calibration,
    read_calibration_manifest,
)
from spartan_deploy.errors import DataError, OutputExistsError


def test_bundled_manifest_matches_files():
    manifest = read_calibration_manifest(bundled_calib_dir())
    assert 256 <= manifest["count"] == len(manifest["files"]) <= 512
    pngs = sorted(p.name for p in bundled_calib_dir().glob("*.png"))
    assert pngs == sorted(e["file"] for e in manifest["files"])
    for entry in manifest["files"][:: max(1, len(pngs) // 32)]:
        assert sha256_file(bundled_calib_dir() / entry["file"]) == entry["sha256"]
    assert check_calibration(bundled_calib_dir()) == []


def test_bundled_calib_holds_no_test_image():
    indices = {e["source_index"] for e in read_calibration_manifest()["files"]}
    assert indices.isdisjoint(digits_split("test").tolist())
    assert indices <= set(digits_split("train").tolist())


def test_calib_pngs_equal_the_digits_they_come_from():
    entries = read_calibration_manifest()["files"][:16]
    from_pngs = load_calibration(bundled_calib_dir(), DIGITS_DATA_CONFIG)[:16]
    digits = open_dataset("digits", DIGITS_DATA_CONFIG, split="all")
    expected = np.stack([digits.load(e["source_index"]) for e in entries])
    np.testing.assert_array_equal(from_pngs, expected)


def test_regeneration_is_deterministic_and_refuses_overwrite(tmp_path: Path):
    first = make_digits_calibration(tmp_path / "a", count=8, seed=3)
    second = make_digits_calibration(tmp_path / "b", count=8, seed=3)
    assert read_calibration_manifest(first)["files"] == read_calibration_manifest(second)["files"]
    with pytest.raises(OutputExistsError):
        make_digits_calibration(first, count=8, seed=3)
    make_digits_calibration(first, count=4, seed=3, force=True)
    assert len(list(first.glob("*.png"))) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_check_finds_tampering_and_leaks(tmp_path: Path):
    folder = make_digits_calibration(tmp_path / "c", count=6, seed=0)
    victim = sorted(folder.glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes() + b"x")
    (folder / "extra.png").write_bytes(victim.read_bytes())
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["files"][1]["source_index"] = int(digits_split("test")[0])
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    problems = " | ".join(check_calibration(folder))
    assert "sha256 differs" in problems and "not in the manifest" in problems
    assert "is a test image" in problems


def test_load_calibration_count_and_seed():
    a = load_calibration(bundled_calib_dir(), DIGITS_DATA_CONFIG, count=10, seed=1)
    b = load_calibration(bundled_calib_dir(), DIGITS_DATA_CONFIG, count=10, seed=1)
    assert a.shape == (10, 3, 32, 32) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    with pytest.raises(DataError, match="fewer than the 100000"):
        load_calibration(bundled_calib_dir(), DIGITS_DATA_CONFIG, count=100000)
