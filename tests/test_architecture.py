"""Rules of the house that code review alone would let slip: checked on the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spartan_deploy"
HEAVY = ("torch", "onnx", "onnxruntime", "modelopt")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_exactly_one_module_opens_onnxruntime_sessions() -> None:
    openers = [p.relative_to(PACKAGE).as_posix() for p in _modules()
               if "InferenceSession(" in p.read_text()]
    assert openers == ["runtime/ort_session.py"]


def test_engine_stage_imports_neither_export_nor_quantize() -> None:
    for path in (PACKAGE / "engine").glob("*.py"):
        bad = {m for m in _imports(path)
               if m.startswith(("spartan_deploy.export", "spartan_deploy.quantize"))}
        assert not bad, f"{path.name} imports {bad}"


def test_stages_never_chain_other_stages() -> None:
    """Only the orchestration calls more than one stage; a stage calls none of the others."""
    stages = {"export": "export_onnx", "quantize": "quantize_onnx", "prune": "prune(",
              "engine": "build_engine("}
    for package, own in stages.items():
        for path in (PACKAGE / package).glob("*.py"):
            text = path.read_text()
            others = [call for name, call in stages.items() if name != package and
                      f"{call}" in text and f"def {call.rstrip('(')}" not in text]
            assert not others, f"{package}/{path.name} calls {others}"


@pytest.mark.parametrize("command", ["", "info", "train", "export", "prune", "quantize",
                                     "build-engine", "bench", "eval", "pipeline", "debug", "triton", "serve", "loadtest"])
def test_help_loads_no_heavy_library(command: str) -> None:
    argv = [command, "--help"] if command else ["--help"]
    probe = ("import sys\nfrom spartan_deploy.cli import run\n"
             f"code = run({argv!r})\n"
             f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_default_data_is_found_without_the_source_tree() -> None:
    """Bundled data is package data (importlib.resources), never a path from __file__."""
    for path in _modules():
        text = path.read_text()
        assert "parents[2]" not in text and 'Path(__file__).resolve().parent /' not in text, path
