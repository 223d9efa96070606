"""Temporary files and folders that a later run can clean up, and the lock of an output
folder.

Every temporary name carries the pid of the process that made it, and that process holds an
flock on it while it lives, so a later run can tell leftovers of a killed run (owner gone,
lock free) from the files of a run still working, and remove them. The names are re-exported
by :mod:`spartan_deploy._io`, the one files module.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from spartan_deploy.errors import SpartanError

TEMP_SUFFIX = ".tmp"
SCRATCH_PREFIX = "spartan-"
TEMP_NAME = re.compile(r"^\..*\.pid(\d+)-[a-z0-9_]+\.tmp$")  # mkstemp's random part
_SCRATCH_NAME = re.compile(r"^spartan-[A-Za-z0-9_-]+\.pid(\d+)-[0-9a-f]+$")
_SCRATCH_LOCK = ".owner.lock"
_STEM_LIMIT = 120  # bytes of the target's name kept in its temporary name


def temp_prefix(stem: str) -> str:
    """``.<stem>.pid<pid>-`` (mkstemp appends random characters, then ``.tmp``)."""
    short = os.fsencode(stem)[:_STEM_LIMIT].decode(errors="ignore") or "file"
    return f".{short}.pid{os.getpid()}-"


def _owner_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: the pid exists, owned by someone else
        return True
    return True


def _lock_free(path: Path) -> bool:
    """True when nobody holds an flock on ``path`` (the owner died or never locked it)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep_stale_temporaries(folder: Path) -> list[Path]:
    """Remove temporary files a killed run left in ``folder``; returns what was removed."""
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = TEMP_NAME.match(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            path = Path(entry.path)
            if not _owner_alive(int(match.group(1))) and _lock_free(path):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def sweep_stale_scratch(root: Path | None = None) -> list[Path]:
    """Remove ``spartan-*`` temporary folders of runs that are gone (system temp folder)."""
    root = Path(root or tempfile.gettempdir())
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            match = _SCRATCH_NAME.match(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            folder = Path(entry.path)
            lock = folder / _SCRATCH_LOCK
            if _owner_alive(int(match.group(1))) or (lock.exists() and not _lock_free(lock)):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold an flock on ``path`` for the block (released by the kernel if we die)."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def scratch_dir(tag: str) -> Iterator[Path]:
    """A private temporary folder ``spartan-<tag>.pid<pid>-<random>`` in the system temp
    folder, removed when the block ends (also on Ctrl-C or SIGTERM); leftovers of killed
    runs are swept first."""
    sweep_stale_scratch()
    root = Path(tempfile.gettempdir())
    folder = root / f"{SCRATCH_PREFIX}{tag}.pid{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    try:
        lock = folder / _SCRATCH_LOCK
        lock.touch()
        with held(lock):
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def temp_inside(folder: Path) -> Iterator[None]:
    """Within the block, libraries' own temporary files (ONNX Runtime's quantizer, Model
    Optimizer) go inside ``folder`` (one of our scratch folders), so a killed run leaves them
    where the next run's sweep finds them. Single-threaded blocks only: the setting is
    process-wide."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous



LOCK_NAME = ".spartan.lock"


class FolderLock:
    """An exclusive flock on ``<folder>/.spartan.lock`` for one run that writes the folder.

    Two runs into one folder would both redo every stage and race on the same files; the
    second is refused at once, naming the folder and the holder's pid. Single-file commands
    (export, quantize, ... with -o) check the lock of the folder they write into too
    (:meth:`check_free`, called by :func:`check_output_path`). The kernel drops the lock when
    the holder's process ends, however it ends, so a killed run never leaves the folder
    locked. A run that ends removes the lock file; one that was killed leaves it (it holds
    only the dead holder's pid) for the next run to take over.
    """

    _held: set[Path] = set()  # folders this process holds (its own writes pass check_free)

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder).resolve()
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        while self._fd is None:
            self._fd = self._take(folder)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        FolderLock._held.add(self.folder)

    def _take(self, folder: Path) -> int | None:
        """Lock the file at ``self.path``; None when it was removed (by a holder ending)
        between our open and our lock: that inode no longer guards the folder, try again."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise _busy(folder, holder) from None
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is None or current.st_ino != os.fstat(fd).st_ino:
            os.close(fd)
            return None
        return fd

    @classmethod
    def check_free(cls, folder: Path) -> None:
        """Refuse writing into a folder another process's run holds (BusyError)."""
        import fcntl

        path = Path(folder) / LOCK_NAME
        if not path.is_file():
            return
        with contextlib.suppress(OSError):
            if Path(folder).resolve() in cls._held:
                return
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(folder, _lock_holder(fd)) from None
        finally:
            os.close(fd)  # closing drops the shared lock taken to test

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def release(self) -> None:
        """Remove the lock file, then unlock (closing the descriptor drops the flock); a
        run that opened the old file meanwhile sees it gone and takes a new one."""
        if self._fd is not None:
            FolderLock._held.discard(self.folder)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self._close()

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(os.pread(fd, 32, 0).decode().strip())}"
    return "pid unknown"


def _busy(folder: Path, holder: str) -> SpartanError:
    from spartan_deploy.errors import BusyError

    return BusyError(f"output folder {str(folder)!r} is in use by another spartan run "
                     f"({holder}); wait for it to finish or choose another output folder")
