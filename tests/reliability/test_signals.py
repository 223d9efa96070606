"""Terminating signals end a run like Ctrl-C (cleanup, exit 128 + signal), and a later run
sweeps what a killed one (SIGKILL: no cleanup possible) left behind. Real child processes,
real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spartan_deploy import _io

POLL_S = 0.02
WAIT_S = 120.0


def _spartan(args: list[str], tmpdir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "spartan_deploy", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the command ended (rc {proc.returncode}) before the signal: "
                        f"{proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the command never reached the point to signal")
        time.sleep(POLL_S)


def _scratch(tmpdir: Path, tag: str = "") -> list[Path]:
    return sorted(tmpdir.glob(f"spartan-{tag}*"))


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize(("target", "tag"), [("cpu", "int8"), ("tensorrt", "mo")])
def test_sigterm_during_quantize_cleans_up_and_exits_143(tiny_onnx, digits_pngs, tmp_path,
                                                         target, tag):
    if target == "tensorrt":
        pytest.importorskip("modelopt.onnx.quantization")
    tmpdir, out = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    proc = _spartan(["quantize", str(tiny_onnx), "--calib", str(digits_pngs), "--target", target,
                     "-o", str(out / "model.int8.onnx")], tmpdir)
    # The scratch folder exists from the first byte written until the result is saved; for
    # tensorrt, "mo" is the folder the Model Optimizer child process writes into.
    _wait_for(lambda: bool(_scratch(tmpdir, tag)), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "SIGTERM" in err
    assert _scratch(tmpdir) == []
    assert not out.exists() or _temporaries(out) == []
    assert not (out / "model.int8.onnx").exists()


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from spartan_deploy._io import atomic_path, scratch_dir
    from spartan_deploy._signals import exit_code, terminate_as_interrupt
    try:
        with terminate_as_interrupt(), scratch_dir("test") as scratch:
            with atomic_path(Path(sys.argv[1])) as tmp:
                tmp.write_bytes(b"x" * 4096)  # begun writing
                (scratch / "work.bin").write_bytes(b"y")
                print("writing", flush=True)
                time.sleep(120)
    except KeyboardInterrupt as err:
        sys.exit(exit_code(err))
""")


def _start_writer(tmpdir: Path, target: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A child process that is mid-way through writing ``target`` (see _WRITER), with its
    temp folder at ``tmpdir``; returns it and its environment."""
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, env


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGXCPU,
                                 signal.SIGUSR1])
def test_signal_while_writing_leaves_no_temporaries(tmp_path, sig):
    tmpdir, target = tmp_path / "tmp", tmp_path / "out" / "model.onnx"
    proc, _ = _start_writer(tmpdir, target)
    assert proc.stdout.readline().strip() == "writing"
    assert _temporaries(target.parent) and _scratch(tmpdir)  # the files the signal must undo
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 128 + sig, err
    assert _temporaries(target.parent) == [] and not target.exists()
    assert _scratch(tmpdir) == []


def test_leftovers_of_a_killed_run_are_swept_by_the_next_run(tmp_path):
    """SIGKILL cannot be caught: the temporaries stay, and the next command removes them."""
    tmpdir, target = tmp_path / "tmp", tmp_path / "out" / "model.onnx"
    proc, env = _start_writer(tmpdir, target)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.communicate(timeout=WAIT_S)
    left_tmp, left_scratch = _temporaries(target.parent), _scratch(tmpdir)
    assert left_tmp and left_scratch
    # Any later command sweeps the system temp folder; a later write sweeps its folder.
    done = subprocess.run([sys.executable, "-m", "spartan_deploy", "--help"], env=env,
                          capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0
    assert _scratch(tmpdir) == []
    _io.write_json(target.parent / "other.json", {"ok": True})
    assert _temporaries(target.parent) == []


def test_temporaries_of_a_live_run_are_kept(tmp_path):
    """The sweep never takes files from a run that is still working (pid alive, lock held)."""
    tmpdir, target = tmp_path / "tmp", tmp_path / "out" / "model.onnx"
    proc, _ = _start_writer(tmpdir, target)
    try:
        assert proc.stdout.readline().strip() == "writing"
        live_tmp, live_scratch = _temporaries(target.parent), _scratch(tmpdir)
        assert _io.sweep_stale_temporaries(target.parent) == []
        assert _io.sweep_stale_scratch(tmpdir) == []
        assert _temporaries(target.parent) == live_tmp and _scratch(tmpdir) == live_scratch
    finally:
        proc.kill()
        proc.communicate(timeout=WAIT_S)


def test_temporary_names_stay_within_the_name_limit(tmp_path):
    """The temporary beside a target whose name is near the limit is itself legal."""
    target = tmp_path / ("n" * 240 + ".onnx")
    _io.write_atomic(target, lambda tmp: tmp.write_bytes(b"ok"))
    assert target.read_bytes() == b"ok"
