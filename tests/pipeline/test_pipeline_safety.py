"""A run folder loses nothing: another run in it (a second pipeline, an export -o) is
refused while one runs; files the folder's runs did not make (a report, a pruned model, an
artefact replaced by `spartan export -o`) are never replaced without --force; a bad --data
is refused before any stage runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from spartan_deploy.cli import run
from spartan_deploy.errors import BusyError, OutputExistsError
from spartan_deploy.pipeline.orchestrate import Orchestrator, RunInputs
from tests.conftest import tiny_digits_run_inputs

torch.set_num_threads(1)
WAIT_S = 120.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny checkpoint for digits and an 8-image calibration folder."""
    return tiny_digits_run_inputs(tmp_path_factory.mktemp("safety"), 8)


def _pipeline(inputs, out: Path, *extra: str) -> list[str]:
    weights, calib = inputs
    return ["pipeline", "-w", str(weights), "--calib", str(calib), "-o", str(out),
            "--batch", "2", "--bench-seconds", "0.05", "--threads", "1", "--limit", "8",
            *extra]


def _one_error(capsys, argv: list[str]) -> str:
    rc = run(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc != 0 and "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from spartan_deploy._io import FolderLock
    lock = FolderLock(Path(sys.argv[1]))
    print("locked", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def held_folder(tmp_path):
    """A folder whose lock another process holds; yields (folder, that process)."""
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield folder, holder
    holder.kill()
    holder.communicate(timeout=WAIT_S)


def test_second_run_into_a_held_folder_is_refused(inputs, held_folder, capsys):
    folder, holder = held_folder
    before = sorted(os.listdir(folder))
    line = _one_error(capsys, _pipeline(inputs, folder))
    assert str(folder) in line and f"pid {holder.pid}" in line
    assert sorted(os.listdir(folder)) == before
    # Single-file commands writing into the folder are refused too.
    line = _one_error(capsys, ["export", "-w", str(inputs[0]), "-o", str(folder / "x.onnx")])
    assert f"pid {holder.pid}" in line and not (folder / "x.onnx").exists()


def test_the_lock_dies_with_its_process(inputs, held_folder):
    folder, holder = held_folder
    with pytest.raises(BusyError):
        Orchestrator(folder, RunInputs(calib=inputs[1]))
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=WAIT_S)
    with Orchestrator(folder, RunInputs(calib=inputs[1])):
        pass  # free again, although the killed holder never released it


def test_two_concurrent_pipelines(inputs, tmp_path, capsys):
    """The second pipeline into a folder is refused while the first runs; the first, then
    stopped with SIGTERM, leaves no temporary file."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "spartan_deploy", *_pipeline(inputs, out)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    lock = out / ".spartan.lock"
    deadline = time.monotonic() + WAIT_S
    while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline, "the first pipeline never locked its folder"
        time.sleep(0.05)
    line = _one_error(capsys, _pipeline(inputs, out))
    assert f"pid {first.pid}" in line
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=WAIT_S)
    assert first.returncode == 128 + signal.SIGTERM, err
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not lock.exists()  # released on the way out


@pytest.mark.parametrize("name", ["report/report.md", "report/accuracy_vs_throughput.png",
                                  "model.pruned.pt"])
def test_user_files_in_out_are_kept(inputs, tmp_path, capsys, name):
    out = tmp_path / "run"
    mine = out / name
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's own file")
    extra = ("--prune", "0.3") if name == "model.pruned.pt" else ()
    line = _one_error(capsys, _pipeline(inputs, out, *extra))
    assert mine.name in line and "--force" in line
    assert mine.read_bytes() == b"the user's own file"
    assert not (out / "model.onnx").exists()  # refused before the stages ran


def test_artefact_replaced_by_export_o_is_not_overwritten(inputs, tmp_path, capsys):
    from spartan_deploy.model import load_model

    out = tmp_path / "run"
    loaded = load_model(weights=inputs[0])
    with Orchestrator(out, RunInputs(calib=inputs[1])) as chain:
        chain.export(loaded)
    assert run(["export", "-w", str(inputs[0]), "--img-size", "64", "--force",
                "-o", str(out / "model.onnx")]) == 0
    capsys.readouterr()
    theirs = (out / "model.onnx").read_bytes()
    with Orchestrator(out, RunInputs(calib=inputs[1])) as chain:
        with pytest.raises(OutputExistsError, match="model.onnx.*--force"):
            chain.export(loaded)
    assert (out / "model.onnx").read_bytes() == theirs


def test_bad_data_is_refused_before_any_stage(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    line = _one_error(capsys, _pipeline(inputs, out, "--data", str(tmp_path / "nosuch")))
    assert "nosuch" in line
    assert not (out / "model.onnx").exists()


def test_output_folder_inside_the_calibration_folder_is_refused(inputs, capsys):
    calib = inputs[1]
    before = sorted(os.listdir(calib))
    line = _one_error(capsys, _pipeline(inputs, calib / "run"))
    assert "--calib" in line
    assert sorted(os.listdir(calib)) == before
