"""The one error boundary of every command: operating-system refusals, allocation failures
and interrupts end in one line and their exit code; a bug still shows its traceback."""

from __future__ import annotations

import errno

import pytest

from spartan_deploy.cli import run
from spartan_deploy.errors import ResourceError, system_error


@pytest.mark.parametrize("raised, words", [
    (MemoryError(), "not enough memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:118] . DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 1099511627776 bytes"),
     "not enough memory"),
    (RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad allocation"),
     "not enough memory"),
    (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300), "length limit"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "Permission denied"),
])
def test_every_command_turns_system_refusals_into_one_line(raised, words, monkeypatch,
                                                           capsys):
    import spartan_deploy.model as model

    def refuse(*_args, **_kwargs):
        raise raised

    monkeypatch.setattr(model, "load_model", refuse)
    rc = run(["info"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1 and "Traceback" not in err
    assert len(lines) == 1 and words in lines[0], err


def test_a_bug_keeps_its_traceback(monkeypatch):
    import spartan_deploy.model as model

    def bug(*_args, **_kwargs):
        raise TypeError("a genuine programming error")

    monkeypatch.setattr(model, "load_model", bug)
    with pytest.raises(TypeError, match="genuine"):
        run(["info"])


def test_ctrl_c_inside_a_command_exits_130(monkeypatch, capsys):
    import spartan_deploy.model as model

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "load_model", interrupted)
    assert run(["info"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_translation_leaves_other_errors_alone():
    assert system_error(ValueError("not a system refusal")) is None
    assert isinstance(system_error(MemoryError()), ResourceError)


def test_a_reader_that_left_the_pipe_ends_quietly():
    """`spartan info | head -c1`: the write fails with EPIPE; no traceback, a non-zero exit
    (rich's console ends with 1 itself; other writes end with 141, as for SIGPIPE)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "spartan_deploy", "info"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (1, 141), err
    assert "Traceback" not in err and "Exception ignored" not in err
