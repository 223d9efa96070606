"""``spartan debug`` through the console-script path: table, JSON, report folder; bad input
is one error line, a non-zero exit and nothing written; the module imports nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spartan_deploy.cli import run

from ..cli_run import one_error as _one_error
from tests.debug.conftest import break_scale

ARGS = ["--limit", "32", "--threads", "1", "--what-if", "2"]




def test_table_json_and_report(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit = "stage3.block1.cmixer"
    broken = break_scale(run_copy / "model.int8.trt.onnx", unit, 100.0,
                         run_copy / "model.int8.broken.onnx")
    out, folder = run_copy / "debug.json", run_copy / "report"
    assert run(["debug", str(broken), "--json", str(out), "--report", str(folder), *ARGS]) == 0
    shown = capsys.readouterr().out
    assert unit in shown and "local" in shown and "what if" in shown
    data = json.loads(out.read_text())
    assert data["ranking"][0] == unit
    assert data["precision"] == "int8" and data["images"] == 32
    # Returning the planted fault to float brings the logits closer to FP32. (Whether that
    # becomes an --exclude suggestion also depends on single images flipping: the rule is
    # tested on its own in test_debug.)
    first = data["what_if"][0]
    assert first["unit"] == unit and first["logits_sqnr_db"] > data["logits"]["sqnr_db"]
    assert {u["unit"] for u in data["units"]} >= {"stem", unit, "pool", "head"}
    assert "versions" in data and "machine" in data
    assert sorted(p.name for p in folder.iterdir()) == ["debug.png", "report.json",
                                                        "report.md"]
    assert (folder / "debug.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert unit in (folder / "report.md").read_text()


def test_json_to_stdout(artefacts, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["debug", str(artefacts / "model.int8.cpu.onnx"), "--json", "-", *ARGS]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["block_map"] is True and len(data["what_if"]) == 2


def test_refuses_existing_output_without_force(run_copy: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = run_copy / "debug.json"
    out.write_text("keep me")
    line = _one_error(capsys, ["debug", str(run_copy / "model.int8.trt.onnx"), "--json",
                               str(out), "--report", str(run_copy / "rep"), *ARGS], 1)
    assert "--force" in line and str(out) in line
    assert out.read_text() == "keep me"
    assert not (run_copy / "rep").exists()


def test_fp32_candidate_is_one_line(artefacts, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error(capsys, ["debug", str(artefacts / "model.onnx"), *ARGS], 2)
    assert "FP32" in line and "model.onnx" in line


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error(capsys, ["debug", str(tmp_path / "nope.onnx")], 2)
    assert "nope.onnx" in line


@pytest.mark.parametrize("flag", ["--limit", "--what-if"])
def test_bad_count_is_one_line(artefacts, capsys: pytest.CaptureFixture[str],
                               flag: str) -> None:
    line = _one_error(capsys, ["debug", str(artefacts / "model.int8.trt.onnx"), flag, "0"], 2)
    assert flag in line


def test_command_module_imports_nothing_heavy() -> None:
    """At top level the command module imports only the CLI's light layer (the library is
    imported inside the command); the debug package itself imports lazily."""
    import ast

    import spartan_deploy.cli.debug as module

    tree = ast.parse(Path(module.__file__).read_text())
    top = {alias.name for node in tree.body if isinstance(node, ast.Import)
           for alias in node.names}
    top |= {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert top <= {"__future__", "json", "pathlib", "typing", "typer", "rich",
                   "rich.table", "spartan_deploy.cli.app", "spartan_deploy.cli.options",
                   # the enum of --runtime's default (cli.options imports it too)
                   "spartan_deploy.runtime.options"}, top
    code = ("import sys, spartan_deploy.debug; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
