"""Calibration folder handling, activation ranges and the cache key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spartan_deploy.data import DIGITS_DATA_CONFIG
from spartan_deploy.errors import DataError
from spartan_deploy.quantize import CalibMethod, QuantizeOptions
from spartan_deploy.quantize import calibration as cal

CONV_OPS = frozenset({"Conv"})


def test_empty_folder_is_one_line_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no images"):
        cal.load_calibration_set(tmp_path, DIGITS_DATA_CONFIG, QuantizeOptions())


def test_unreadable_folder_is_data_error(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"broken_{i}.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="can be read"):
        cal.load_calibration_set(tmp_path, DIGITS_DATA_CONFIG, QuantizeOptions())


def test_missing_folder_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        cal.load_calibration_set(tmp_path / "nope", DIGITS_DATA_CONFIG, QuantizeOptions())


def test_asking_for_more_images_than_the_folder_has(calib_dir: Path) -> None:
    with pytest.raises(DataError, match="fewer than --calib-count 999"):
        cal.load_calibration_set(calib_dir, DIGITS_DATA_CONFIG, QuantizeOptions(calib_count=999))


def test_split_is_seeded_disjoint_and_sized(calib_dir: Path) -> None:
    total = len(list(calib_dir.glob("*.png")))
    default = cal.load_calibration_set(calib_dir, DIGITS_DATA_CONFIG, QuantizeOptions())
    assert len(default.images) + len(default.holdout) == total
    assert len(default.holdout) == total // 5  # at most a fifth held out by default
    again = cal.load_calibration_set(calib_dir, DIGITS_DATA_CONFIG, QuantizeOptions())
    assert again.files == default.files and again.set_hash == default.set_hash
    picked = cal.load_calibration_set(calib_dir, DIGITS_DATA_CONFIG,
                                      QuantizeOptions(calib_count=8, seed=3))
    assert len(picked.images) == 8 and len(picked.holdout) == total - 8
    assert picked.set_hash != default.set_hash
    assert default.images.shape[1:] == (3, 32, 32) and default.images.dtype == np.float32


def test_a_corrupt_file_is_skipped_and_recorded(calib_dir: Path, tmp_path: Path) -> None:
    for path in sorted(calib_dir.glob("*.png"))[:6]:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "zz_broken.png").write_bytes(b"garbage")
    found = cal.load_calibration_set(tmp_path, DIGITS_DATA_CONFIG, QuantizeOptions(holdout=0))
    assert len(found.images) == 6 and found.skipped == (str(tmp_path / "zz_broken.png"),)


def _two_conv_model(path: Path) -> None:
    """x -> Conv(w1) -> Relu -> Conv(w2) -> y: known intermediate values."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                                     "w1"),
             numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32),
                                     "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="c2")]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def _reference(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    from spartan_deploy.runtime.ort_session import open_session

    model = onnx.load(path)
    for name in ("a", "r"):
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = open_session(model)
    return dict(zip(["y", "a", "r"], sess.run(["y", "a", "r"], {"x": images})))


@pytest.mark.parametrize("symmetric", [False, True])
def test_max_ranges_are_the_true_extremes(tmp_path: Path, symmetric: bool) -> None:
    path = tmp_path / "m.onnx"
    _two_conv_model(path)
    images = np.random.default_rng(1).standard_normal((10, 3, 8, 8)).astype(np.float32)
    # batch 3 forces several collection passes that must merge
    ranges = cal.compute_ranges(path, "x", images, CalibMethod.MAX, symmetric, 99.9, 3,
                                CONV_OPS)
    assert set(ranges) == {"x", "a", "r", "y"}
    ref = {**_reference(path, images), "x": images}
    for name, values in ref.items():
        low, high = ranges[name]
        if symmetric:
            amax = float(np.abs(values).max())
            assert (low, high) == pytest.approx((-amax, amax), rel=1e-6)
        else:
            assert (low, high) == pytest.approx(
                (min(float(values.min()), 0.0), max(float(values.max()), 0.0)), rel=1e-6)


def test_percentile_and_entropy_clip_inside_the_max(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    _two_conv_model(path)
    images = np.random.default_rng(2).standard_normal((16, 3, 8, 8)).astype(np.float32)
    full = cal.compute_ranges(path, "x", images, CalibMethod.MAX, True, 99.9, 8, CONV_OPS)
    for method in (CalibMethod.PERCENTILE, CalibMethod.ENTROPY):
        clipped = cal.compute_ranges(path, "x", images, method, True, 99.0, 8, CONV_OPS)
        assert set(clipped) == set(full)
        for name, (low, high) in clipped.items():
            assert low == pytest.approx(-high) and 0 < high <= full[name][1] + 1e-6
        assert clipped["x"][1] < full["x"][1]  # a Gaussian's tail is cut


def test_cache_key_depends_on_everything_that_changes_ranges(calib_dir: Path) -> None:
    calib = cal.load_calibration_set(calib_dir, DIGITS_DATA_CONFIG, QuantizeOptions())
    other = dataclasses.replace(calib, files=calib.files[1:])
    base = ("a" * 64, calib, DIGITS_DATA_CONFIG, CalibMethod.ENTROPY, True, 99.9, CONV_OPS)
    key = cal.cache_key(*base)
    assert cal.cache_key(*base) == key
    variants = [("b" * 64,) + base[1:], base[:1] + (other,) + base[2:],
                base[:2] + (dataclasses.replace(DIGITS_DATA_CONFIG, input_size=48),) + base[3:],
                base[:3] + (CalibMethod.MAX,) + base[4:], base[:4] + (False,) + base[5:],
                base[:6] + (frozenset({"Conv", "Add"}),)]
    assert len({cal.cache_key(*v) for v in variants} | {key}) == len(variants) + 1
    # the percentile only matters to the percentile method
    assert cal.cache_key(*base[:5], 99.0, CONV_OPS) == key


def test_cache_round_trip_and_key_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    cal.write_cache(path, "k1", {"t": (-1.5, 2.0)}, {"method": "max"})
    assert cal.read_cache(path, "k1") == {"t": (-1.5, 2.0)}
    assert cal.read_cache(path, "k2") is None
    path.write_text("{broken")
    assert cal.read_cache(path, "k1") is None
