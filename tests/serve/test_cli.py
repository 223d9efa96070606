"""The serving commands through the console-script path: work done, and bad input as one
error line with a non-zero exit and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from spartan_deploy.cli import run
from tests.serve.conftest import free_port, require_module


def _one_error(capsys, argv: list[str], code: int) -> str:
    rc = run(argv)
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_triton_writes_then_refuses_to_overwrite(pool_onnx, tmp_path, capsys):
    require_module("tritonclient.grpc.model_config_pb2")
    repo = tmp_path / "repo"
    json_out = tmp_path / "repo.json"
    assert run(["triton", str(pool_onnx), "-o", str(repo), "--queue-delay-us", "300",
                "--preferred-batch", "4,8", "--json", str(json_out)]) == 0
    out = capsys.readouterr().out
    assert "pool-fp32" in out and "given" in out and json_out.is_file()
    config = (repo / "pool-fp32" / "config.pbtxt").read_text()
    assert "preferred_batch_size: [ 4, 8 ]" in config and "max_queue_delay_microseconds: 300" \
        in config
    before = sorted(p.name for p in repo.rglob("*"))
    line = _one_error(capsys, ["triton", str(pool_onnx), "-o", str(repo)], 1)
    assert "--force" in line and str(repo) in line
    assert sorted(p.name for p in repo.rglob("*")) == before


@pytest.mark.parametrize("argv, code, words", [
    (["triton", "missing.onnx", "-o", "REPO"], 2, "does not exist"),
    (["triton", "model.txt", "-o", "REPO"], 2, "cannot be served"),
    (["triton", "POOL", "-o", "REPO", "--preferred-batch", "0"], 2, "--preferred-batch"),
    (["triton", "POOL", "-o", "REPO", "--preferred-batch", "128"], 2, "exceeds"),
    (["loadtest", "10.1.2.3:8000", "m", "--repository", "."], 2, "loopback"),
    (["loadtest", "127.0.0.1:8000", "m", "--concurrency", "0"], 2, "--concurrency"),
    (["serve", "NOREPO"], 2, "not a folder"),
])
def test_bad_input_is_one_line(argv, code, words, pool_onnx, tmp_path, capsys):
    require_module("tritonclient.grpc.model_config_pb2")
    (tmp_path / "model.txt").write_text("x")
    swap = {"REPO": str(tmp_path / "repo"), "POOL": str(pool_onnx),
            "NOREPO": str(tmp_path / "none"), "model.txt": str(tmp_path / "model.txt"),
            "missing.onnx": str(tmp_path / "missing.onnx")}
    line = _one_error(capsys, [swap.get(a, a) for a in argv], code)
    assert words in line
    assert not (tmp_path / "repo").exists()


def test_loadtest_without_a_server_says_so(pool_onnx, tmp_path, capsys):
    require_module("tritonclient.http")
    line = _one_error(capsys, ["loadtest", f"127.0.0.1:{free_port()}", "pool-fp32",
                               "--reference", str(pool_onnx)], 1)
    assert "no Triton server answers" in line and "spartan serve" in line


def test_serve_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys; from spartan_deploy.cli import run; run(['serve', '--help']); "
            "run(['loadtest', '--help']); run(['triton', '--help']); "
            "print(sorted(m for m in ('tritonclient', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
