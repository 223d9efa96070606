"""Running the console-script path in tests: bad input must be one line, no traceback."""

from __future__ import annotations

import pytest

from spartan_deploy.cli import run


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    """Run ``spartan argv``; assert it exits ``code`` with exactly one error line."""
    rc = run(argv)
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]
