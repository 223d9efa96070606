"""Fixtures of the reliability tests: a few digits as PNGs (a calibration folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_digit_pngs

CALIB_IMAGES = 16


@pytest.fixture(scope="session")
def digits_pngs(tmp_path_factory) -> Path:
    return write_digit_pngs(tmp_path_factory.mktemp("digits-pngs"), CALIB_IMAGES)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    """The official tiny SpaRTAN as our checkpoint, with the digits preprocessing."""
    from spartan_deploy.data import DIGITS_DATA_CONFIG
    from spartan_deploy.model import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("tiny-ckpt") / "tiny.pt", tiny_model,
                           DIGITS_DATA_CONFIG)


@pytest.fixture
def small_disk(tmp_path):
    """A real file system with about SMALL_DISK_FREE bytes free: a 1 MiB tmpfs, mostly
    filled (by a hidden file). Skipped with the reason where mounting is not allowed (not root, no tmpfs)."""
    import shutil
    import subprocess

    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small file system to fill")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip() or 'not root'})")
    try:
        free = shutil.disk_usage(mount_point).free
        (mount_point / ".filler").write_bytes(b"\0" * max(0, free - SMALL_DISK_FREE))
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


SMALL_DISK_FREE = 64 * 1024  # room for small scratch files, not for a model
