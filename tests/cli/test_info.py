"""``spartan info`` and the shared bad-input behaviour of the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from spartan_deploy.cli import app, run

runner = CliRunner()


def _run_main(capsys, *args: str) -> tuple[int, str]:
    """Through the console-script entry point, as a user runs it."""
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def test_info_json_reports_official_figures():
    result = _invoke("info", "--model", "spartan-t", "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["params"] == 3_820_296
    assert abs(data["macs"] / 1e9 - 0.80) / 0.80 < 0.02
    assert [s["name"] for s in data["stages"]][1:5] == [f"stage {i}" for i in range(1, 5)]
    assert sum(s["macs_share"] for s in data["stages"]) == pytest.approx(1.0)


def test_info_table_at_256():
    result = _invoke("info", "--model", "spartan-t", "--img-size", "256")
    assert result.exit_code == 0, result.output
    assert "3,820,296" in result.output and "1.044 GMACs" in result.output


def test_info_with_weights_infers_architecture(tmp_path, official_fixture):
    path = tmp_path / "tiny.pt"
    torch.save({"model": {"module." + k: v for k, v in official_fixture["state_dict"].items()}},
               path)
    result = _invoke("info", "--weights", str(path), "--json", "-", "--img-size", "64")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["config"]["layer_depths"] == [1, 1, 2, 1]


def _one_line_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in result.output


def test_unknown_model_lists_known_ones():
    _one_line_error(_invoke("info", "--model", "spartan-huge"), 1, "spartan-huge", "spartan-t")


@pytest.mark.parametrize("size", ["16", "31", "big", "3.5"])
def test_img_size_bad_values_are_one_line_errors(capsys, size):
    code, output = _run_main(capsys, "info", "--model", "spartan-t", "--img-size", size)
    assert code == 2
    assert len(output.strip().splitlines()) == 1 and size in output and "32" in output


def test_unknown_option_is_one_line_error(capsys):
    code, output = _run_main(capsys, "info", "--bogus")
    assert code == 2 and "--bogus" in output and len(output.strip().splitlines()) == 1


def test_missing_weights_file(tmp_path):
    _one_line_error(_invoke("info", "--weights", str(tmp_path / "no.pt")), 1, "no.pt",
                    "does not exist")


def test_yaml_missing_key(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("layer_depths: [1, 1, 1, 1]\nexpand_ratios: [4, 4, 2, 2]\n"
                    "dims: [64, 128, 256]\nnum_classes: 10\n")
    _one_line_error(_invoke("info", "--model", str(path)), 1, "init_dim", "missing")


def test_yaml_wrong_type(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("layer_depths: [1, 1, 1, 1]\nexpand_ratios: [4, 4, 2, 2]\n"
                    "dims: [64, 128, 256]\ninit_dim: thirty-two\nnum_classes: 10\n")
    _one_line_error(_invoke("info", "--model", str(path)), 1, "init_dim", "thirty-two")


def test_yaml_custom_model_works(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("layer_depths: [1, 1, 2, 1]\nexpand_ratios: [4, 4, 2, 2]\n"
                    "dims: [32, 64, 128]\ninit_dim: 16\nnum_classes: 10\n"
                    "data: {input_size: 64}\n")
    result = _invoke("info", "--model", str(path), "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["img_size"] == 64


def test_info_artefact_prints_its_lineage_and_names_a_changed_file(tmp_path, tiny_model):
    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import DataConfig, load_model, save_checkpoint

    weights = save_checkpoint(tmp_path / "tiny.pt", tiny_model, DataConfig(input_size=64))
    onnx_path = tmp_path / "model.onnx"
    export_onnx(load_model(weights=weights), onnx_path, ExportOptions(simplify=False))
    ok = _invoke("info", str(onnx_path))
    assert ok.exit_code == 0, ok.output
    assert "lineage" in ok.output and "model.onnx" in ok.output and "tiny.pt" in ok.output
    assert ok.output.count(" ok") >= 2
    listed = _invoke("info", str(onnx_path), "--json", "-")
    steps = json.loads(listed.output)
    assert [s["status"] for s in steps] == ["ok", "ok"]
    weights.write_bytes(weights.read_bytes() + b"\0")
    bad = _invoke("info", str(onnx_path))
    assert bad.exit_code == 1 and "tiny.pt is changed" in bad.output
