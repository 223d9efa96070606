"""Bad inputs a user can hand in: 16-bit images, names that are not UTF-8, NaN weights,
damaged or wrong-shaped records, corrupt checkpoints, graphs that are not SpaRTANs,
absurd sizes. Each is read correctly or refused in one line naming it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from spartan_deploy.cli import run
from spartan_deploy.errors import (
    CheckpointError, ConfigError, DataError, QuantizationError, ResourceError)

torch.set_num_threads(1)


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The command fails with exactly one error line (progress bars drawn before it may
    stay) and no traceback."""
    rc = run(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc != 0, err
    assert "Traceback" not in err
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    return lines[0]


# --- images -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
@pytest.mark.parametrize("grayscale", [True, False])
def test_16_bit_images_match_their_8_bit_twins(mode, grayscale):
    from spartan_deploy.data.preprocess import to_array
    from spartan_deploy.model.config import DataConfig, ResizeRule

    config = DataConfig(input_size=32, resize_size=40, grayscale=grayscale,
                        resize_rule=ResizeRule.SHORTER_THEN_CENTER_CROP)
    rng = np.random.default_rng(0)
    eight = rng.integers(0, 256, (48, 56), dtype=np.uint8)
    sixteen = Image.fromarray(eight.astype(np.uint16) * 257)  # 255 -> 65535, exactly
    if mode != sixteen.mode:
        sixteen = sixteen.convert(mode) if mode == "I" else \
            Image.frombytes(mode, sixteen.size, (eight.astype(">u2") * 257).tobytes())
    assert sixteen.mode == mode
    a, b = to_array(Image.fromarray(eight), config), to_array(sixteen, config)
    # Only the 8-bit path's rounding after resizing differs: under one grey level.
    assert np.abs(a - b).max() <= 1.0 / 255.0 / min(config.std) + 1e-6


def test_16_bit_png_folder_calibrates_like_its_8_bit_twin(tmp_path):
    from spartan_deploy.data import DIGITS_DATA_CONFIG, open_dataset

    rng = np.random.default_rng(1)
    for name in ("eight", "sixteen"):
        (tmp_path / name / "a").mkdir(parents=True)
    for i in range(3):
        pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "eight" / "a" / f"{i}.png")
        Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "sixteen" / "a" /
                                                             f"{i}.png")
    eight = open_dataset(tmp_path / "eight", DIGITS_DATA_CONFIG, "all")
    sixteen = open_dataset(tmp_path / "sixteen", DIGITS_DATA_CONFIG, "all")
    (x8, _), = eight.batches(8)
    (x16, _), = sixteen.batches(8)
    assert np.abs(x8 - x16).max() < 0.02 and x16.max() < x8.max() + 0.02


def test_file_names_that_are_not_utf8(tmp_path):
    from spartan_deploy.quantize.calibration import folder_digest

    calib = tmp_path / "calib"
    calib.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(calib / "ok.png")
    raw = os.fsencode(calib) + b"/bad\xff.png"
    shutil.copy(calib / "ok.png", raw)
    first = folder_digest(calib)
    os.rename(raw, os.fsencode(calib) + b"/bad\xfe.png")
    assert folder_digest(calib) != first  # the raw bytes of the name count


def test_reports_name_folders_that_are_not_utf8(tmp_path, tiny_onnx, capsys):
    data = Path(os.fsdecode(os.fsencode(tmp_path) + b"/data\xff"))
    for label, count in (("a", 3), (os.fsdecode(b"b\xfe"), 3)):
        (data / label).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(data / label / f"{i}.png")
    report = tmp_path / "report"
    assert run(["eval", str(tiny_onnx), "--data", str(data), "--report", str(report)]) == 0
    assert b"data\xff" in (report / "report.md").read_bytes()  # the name's own bytes


# --- numbers ------------------------------------------------------------------------------
def test_nan_checkpoint_is_refused_by_eval(tiny_model, tmp_path, capsys):
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.model import save_checkpoint

    broken = type(tiny_model)(tiny_model.config)
    broken.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        broken.layers[0].scale_1.fill_(float("nan"))
    path = save_checkpoint(tmp_path / "nan.pt", broken, DIGITS_DATA_CONFIG)
    line = _one_error(capsys, ["eval", str(path), "--data", "digits", "--limit", "8"])
    assert "NaN" in line and "layers.0.scale_1" in line


def test_graph_with_nan_logits_is_an_error_not_a_figure(tiny_onnx, capsys):
    model = onnx.load(str(tiny_onnx))
    init = next(i for i in model.graph.initializer
                if onnx.numpy_helper.to_array(i).dtype == np.float32
                and onnx.numpy_helper.to_array(i).size > 100)
    array = onnx.numpy_helper.to_array(init).copy()
    array.flat[0] = np.nan
    init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
    onnx.save(model, str(tiny_onnx))
    line = _one_error(capsys, ["eval", str(tiny_onnx), "--data", "digits", "--limit", "8"])
    assert "NaN or infinite logits" in line and "model.onnx" in line


@pytest.mark.parametrize("ranges", [{"t": [float("nan"), 1.0]}, {"t": [0.0, float("inf")]},
                                    {"t": [2.0, 1.0]}, {"t": "wide"}, {"t": [1.0]}, []])
def test_calibration_cache_with_bad_ranges_is_refused(tmp_path, ranges):
    from spartan_deploy.quantize.calibration import read_cache

    path = tmp_path / "calib-k.json"
    path.write_text(json.dumps({"key": "k", "ranges": ranges}))
    with pytest.raises(QuantizationError, match="--no-cache") as caught:
        read_cache(path, "k")
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("text", ["[1, 2]", "7", '"k"', "{broken", '{"key": "other"}'])
def test_calibration_cache_that_is_not_one_is_rebuilt(tmp_path, text):
    from spartan_deploy.quantize.calibration import read_cache

    path = tmp_path / "calib-k.json"
    path.write_text(text)
    assert read_cache(path, "k") is None


def test_quantize_with_a_poisoned_cache_names_it(tiny_onnx, digits_pngs, tmp_path, capsys):
    out = tmp_path / "q" / "model.int8.cpu.onnx"
    argv = ["quantize", str(tiny_onnx), "--calib", str(digits_pngs), "--target", "cpu",
            "-o", str(out)]
    assert run(argv) == 0
    capsys.readouterr()
    cache = next((out.parent / ".cache").glob("calib-*.json"))
    data = json.loads(cache.read_text())
    data["ranges"][next(iter(data["ranges"]))] = [float("nan"), 1.0]
    cache.write_text(json.dumps(data))
    line = _one_error(capsys, [*argv, "--force"])
    assert cache.name in line and "--no-cache" in line
    assert run([*argv, "--force", "--no-cache"]) == 0


# --- records ------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["[]", "3", '{"version": 2, "stages": []}',
                                  '{"version": 2, "stages": {"export": {"inputs": {}, '
                                  '"outputs": {}, "summary": {}, "options": []}}}'])
def test_ledger_of_the_wrong_shape_is_rebuilt(tmp_path, text):
    from spartan_deploy.pipeline.ledger import Ledger

    (tmp_path / "pipeline.json").write_text(text)
    ledger = Ledger(tmp_path)
    assert ledger.damaged and ledger.summary("export") == {}


@pytest.mark.parametrize("text", ["[]", '{"files": 3}', '{"files": [1]}',
                                  '{"files": [{"file": "a.png", "sha256": "x", '
                                  '"source_index": "7", "label": 1}]}'])
def test_calibration_manifest_of_the_wrong_shape(tmp_path, text):
    from spartan_deploy.data.calib import check_calibration

    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(DataError, match="wrong shape"):
        check_calibration(tmp_path)


# --- messages -----------------------------------------------------------------------------
@pytest.mark.parametrize("content", [os.urandom(4096), b"\x80" + os.urandom(4095),
                                     b"PK\x03\x04" + os.urandom(4092)])
def test_corrupt_checkpoint_is_not_called_a_pickle(tmp_path, content):
    from spartan_deploy.model.checkpoint import read_checkpoint

    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert "--trust-checkpoint" not in str(caught.value)
    assert "pickled Python objects" not in str(caught.value)


def test_truncated_checkpoint_is_damaged(tiny_checkpoint, tmp_path):
    from spartan_deploy.model.checkpoint import read_checkpoint

    path = tmp_path / "cut.pt"
    path.write_bytes(tiny_checkpoint.read_bytes()[:50_000])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        read_checkpoint(path)


@pytest.mark.parametrize("key", ["layers.0.scale_1", "layers.1.conv.weight",
                                 "layers.0.cmixer.theta.weight", "linear.weight"])
def test_missing_state_dict_key_is_named_itself(tiny_model, key):
    from spartan_deploy.model.checkpoint import infer_config

    state = {k: v for k, v in tiny_model.state_dict().items() if k != key}
    with pytest.raises(CheckpointError, match=f"key '{key}' is missing"):
        infer_config(state)


def test_graph_that_is_not_a_spartan_is_refused(tmp_path, capsys):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["out"], name="r")], "g",
                              [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    line = _one_error(capsys, ["quantize", str(path), "--model", "spartan-t-digits",
                               "--target", "cpu", "-o", str(tmp_path / "q.onnx")])
    assert "not a SpaRTAN" in line
    assert not (tmp_path / "q.onnx").exists()


def test_quantizing_nothing_is_refused(tiny_onnx, digits_pngs, tmp_path):
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    options = QuantizeOptions(target=Target.CPU, exclude=("Conv", "Gemm"))
    with pytest.raises(QuantizationError, match="no layer .* was quantized"):
        quantize_onnx(tiny_onnx, digits_pngs, options, tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


def test_library_warnings_are_quiet_unless_verbose(capsys, monkeypatch):
    import logging
    import warnings

    import spartan_deploy.model as model

    real = model.load_model

    def noisy(*args, **kwargs):
        warnings.warn("a library's advice", UserWarning)
        logging.getLogger("some.library").warning("a library's log line")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "load_model", noisy)
    assert run(["info"]) == 0
    assert "advice" not in capsys.readouterr().err
    assert run(["--verbose", "info"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "a library's advice" in err and "log line" in err


# --- shapes and sizes ---------------------------------------------------------------------
def test_eval_of_a_fixed_batch_export(tiny_checkpoint, tmp_path, capsys):
    """A graph exported with --batch 4 evaluates 10 images (re-batched, last batch padded)
    with the same logits as the dynamic-batch graph."""
    from spartan_deploy.bench import EvalOptions, run_eval

    fixed, dynamic = tmp_path / "fixed.onnx", tmp_path / "dynamic.onnx"
    assert run(["export", "-w", str(tiny_checkpoint), "--batch", "4", "-o", str(fixed)]) == 0
    assert run(["export", "-w", str(tiny_checkpoint), "-o", str(dynamic)]) == 0
    capsys.readouterr()
    report = run_eval([dynamic, fixed], EvalOptions(data="digits", limit=10, batch_size=3))
    reference, candidate = report.entries
    assert candidate.accuracy.count == 10
    assert candidate.accuracy.agreement_top1 == 1.0
    assert candidate.accuracy.max_logit_diff < 1e-4


@pytest.mark.parametrize("changes", [{"input_size": -1}, {"input_size": 10**6},
                                     {"std": [0, 1, 1]}, {"mean": [float("nan"), 0, 0]},
                                     {"grayscale": "yes"}])
def test_bad_data_config_values(changes):
    from spartan_deploy.model.config import DataConfig

    with pytest.raises(ConfigError):
        DataConfig.from_dict({**DataConfig().to_dict(), **changes})


@pytest.mark.parametrize("key, value", [("dims", [64, 128, 10**9]), ("init_dim", -8),
                                        ("layer_depths", [3, 3, 10**6, 2]),
                                        ("num_classes", 10**12),
                                        ("expand_ratios", [4, 4, 2, 4096])])
def test_model_yaml_out_of_range(tmp_path, capsys, key, value):
    import yaml

    spec = {"layer_depths": [1, 1, 1, 1], "expand_ratios": [4, 4, 2, 2],
            "dims": [32, 64, 128], "init_dim": 16, "num_classes": 10, key: value}
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(spec))
    line = _one_error(capsys, ["info", "--model", str(path)])
    assert key in line


def test_model_too_large_for_memory_is_refused_before_allocating():
    from spartan_deploy.model import SpaRTAN
    from spartan_deploy.model.config import ModelConfig

    huge = ModelConfig(dims=(16384, 16384, 16384), init_dim=16384, layer_depths=(8, 8, 8, 8))
    with pytest.raises(ResourceError, match="parameters needs about"):
        SpaRTAN(huge)


def test_batch_too_large_for_memory_is_refused(tiny_onnx, capsys):
    line = _one_error(capsys, ["bench", str(tiny_onnx), "--batch", "65536", "--img-size",
                               "4096", "--iterations", "1", "--data", "none"])
    assert "--batch 65536" in line and "memory" in line
