"""``spartan bench`` and ``spartan eval`` through the CLI: JSON schema, reports, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spartan_deploy.cli import app, run
from spartan_deploy.cli.options import parse_batches
from spartan_deploy.errors import UsageError
from tests.bench import colour_data as cd

cli = CliRunner()
STAT_KEYS = {"mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms",
             "throughput", "iterations", "batch_size"}
FAST = ["--iterations", "3", "--warmup", "0", "--threads", "1"]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return cd.write_model(tmp_path / "m.onnx", np.eye(3, dtype=np.float32))


@pytest.fixture
def colours(tmp_path: Path) -> Path:
    return cd.write_colour_folder(tmp_path / "colours")


def _invoke(*args: str | Path):
    return cli.invoke(app, [str(a) for a in args])


def _one_line_error(capsys, code: int, *args: str | Path) -> str:
    """Through the console-script entry point, as a user runs it."""
    got = run([str(a) for a in args])
    captured = capsys.readouterr()
    output = (captured.out + captured.err).strip()
    assert got == code, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    return output


def test_bench_json_schema(model: Path, tmp_path: Path) -> None:
    int8 = cd.write_model(tmp_path / "m.int8.onnx", np.eye(3, dtype=np.float32),
                          quantized=True)
    out = tmp_path / "bench.json"
    result = _invoke("bench", model, int8, "--batch", "1,4", *FAST, "--json", out)
    assert result.exit_code == 0, result.output
    assert "m.int8.onnx" in result.output and "vs first" in result.output
    data = json.loads(out.read_text())
    assert data["kind"] == "bench" and data["schema"].startswith("spartan-deploy/")
    assert {"cpu", "cores", "platform"} <= set(data["machine"])
    assert "onnxruntime" in data["versions"] and "torch" in data["versions"]
    assert "gpu" in data and data["options"]["batch_sizes"] == [1, 4]
    rows = data["results"]
    assert [(r["label"], r["batch_size"]) for r in rows] == [
        ("m.onnx", 1), ("m.onnx", 4), ("m.int8.onnx", 1), ("m.int8.onnx", 4)]
    for row in rows:
        assert STAT_KEYS <= set(row["latency"]) and row["latency"]["iterations"] == 3
        assert row["img_size"] == 32 and row["runtime"] == "onnxruntime"
        lat = row["latency"]
        assert lat["min_ms"] <= lat["median_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert lat["throughput"] == pytest.approx(row["batch_size"] * 1000 / lat["mean_ms"])
    assert rows[0]["relative_speed"] == 1.0 and rows[1]["relative_speed"] == 1.0
    assert rows[2]["precision"] == "int8"
    assert rows[2]["relative_speed"] == pytest.approx(
        rows[2]["latency"]["throughput"] / rows[0]["latency"]["throughput"])


def test_bench_with_accuracy_and_report(model: Path, colours: Path, tmp_path: Path) -> None:
    swapped = cd.write_model(tmp_path / "swapped.onnx", cd.SWAP_GREEN_BLUE)
    report = tmp_path / "report"
    result = _invoke("bench", model, swapped, "--batch", "2", *FAST, "--data", colours,
                     "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads((report / "report.json").read_text())
    acc = data["accuracy"]
    assert acc["m.onnx"]["correct1"] == cd.CORRECT and acc["swapped.onnx"]["correct1"] == 2
    assert acc["swapped.onnx"]["agreement_top1"] == pytest.approx(2 / 7)
    assert (report / "accuracy_vs_throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (report / "report.md").read_text()
    assert "| m.onnx |" in markdown and "accuracy_vs_throughput.png" in markdown


def test_eval_reproduces_known_answers(model: Path, colours: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = _invoke("eval", model, "--data", colours, "--batch", "3", "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["kind"] == "eval" and data["reference"] == "m.onnx"
    row = data["results"][0]
    assert row["count"] == cd.COUNT and row["correct1"] == cd.CORRECT
    assert row["top1"] == pytest.approx(cd.CORRECT / cd.COUNT)
    assert data["data"]["labelled"] is True and data["data"]["count"] == cd.COUNT


def test_report_refuses_overwrite_without_force(model: Path, colours: Path,
                                                 tmp_path: Path) -> None:
    report = tmp_path / "report"
    args = ["eval", model, "--data", colours, "--report", report]
    assert _invoke(*args).exit_code == 0
    first = (report / "report.json").read_text()
    again = _invoke(*args)
    assert again.exit_code != 0 and "--force" in again.output
    assert (report / "report.json").read_text() == first
    assert _invoke(*args, "--force").exit_code == 0


# --- bad input: one line, non-zero exit, nothing written -------------------------------------

@pytest.mark.parametrize("batch", ["0", "-4", "x", "1.5", "1,,2", "32,0"])
def test_bad_batch_is_one_line(capsys, model: Path, batch: str, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    message = _one_line_error(capsys, 2, "bench", model, "--batch", batch, "--json", out)
    assert "--batch" in message
    assert not out.exists()


def test_eval_batch_zero_is_one_line(capsys, model: Path, colours: Path) -> None:
    _one_line_error(capsys, 2, "eval", model, "--data", colours, "--batch", "0")


@pytest.mark.parametrize("command", ["bench", "eval"])
def test_unknown_artefact_type(capsys, tmp_path: Path, command: str) -> None:
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"x")
    message = _one_line_error(capsys, 2, command, bad, "--data", "digits")
    assert "model.tflite" in message and "unknown artefact type" in message


@pytest.mark.parametrize("command", ["bench", "eval"])
def test_missing_artefact(capsys, tmp_path: Path, command: str) -> None:
    message = _one_line_error(capsys, 2, command, tmp_path / "gone.onnx", "--data", "digits")
    assert "gone.onnx" in message and "does not exist" in message


def test_eval_on_folder_without_labels(capsys, model: Path, tmp_path: Path) -> None:
    flat = cd.write_flat_folder(tmp_path / "flat")
    message = _one_line_error(capsys, 1, "eval", model, "--data", flat)
    assert "no labels" in message


def test_eval_needs_data(capsys, model: Path) -> None:
    assert run(["eval", str(model)]) == 2


def test_duration_and_iterations_together(capsys, model: Path) -> None:
    message = _one_line_error(capsys, 2, "bench", model, "--duration", "1",
                              "--iterations", "3")
    assert "not both" in message


def test_parse_batches() -> None:
    assert parse_batches("256") == (256,)
    assert parse_batches("1, 32,256") == (1, 32, 256)
    assert parse_batches("8,8") == (8,)
    with pytest.raises(UsageError):
        parse_batches("")
