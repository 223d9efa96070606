"""Terminating signals end a run the way Ctrl-C does: every ``finally`` and context manager
runs, so temporary files and folders are removed and nothing half-written is left.

SIGTERM (kill, timeout, CI cancellation, container and service managers), SIGHUP (a
closed terminal), SIGXCPU (a CPU-time limit) and SIGUSR1/2 (whose default is also to
terminate) would otherwise kill the process on the spot. Here they raise
:class:`Terminated`, a ``KeyboardInterrupt``, in the main thread; the CLI exits with
128 + the signal number, as a shell reports a process killed by that signal.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

# Every signal whose default action ends the process and that a run may be sent; SIGALRM is
# left to whoever sets alarms (test timeouts), SIGKILL cannot be caught.
TERMINATING = (signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU, signal.SIGUSR1, signal.SIGUSR2)
_CHILD_GRACE_S = 10.0  # a child asked to stop gets this long to clean up before SIGKILL


class Terminated(KeyboardInterrupt):
    """A terminating signal, raised where the main thread was (like Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(interrupt: BaseException) -> int:
    """128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + int(getattr(interrupt, "signum", signal.SIGINT))


def signal_name(interrupt: BaseException) -> str:
    return signal.Signals(getattr(interrupt, "signum", signal.SIGINT)).name


_received: list[int] = []  # the terminating signal of this run, once one arrived


def received() -> Terminated | None:
    """The terminating signal this run received, as the exception it raised.

    Code the exception unwinds through may turn it into its own error (a C extension being
    imported reports "ImportError: initialization failed"); the boundary asks here, so such
    a run still ends as stopped by the signal.
    """
    return Terminated(_received[0]) if _received else None


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    # Further terminating signals are ignored while the cleanup runs: a second SIGTERM
    # must not interrupt the removal of what the first one left (SIGKILL still works).
    for other in TERMINATING:
        signal.signal(other, signal.SIG_IGN)
    _received.append(signum)
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, the TERMINATING signals raise :class:`Terminated` (main thread only;
    elsewhere, e.g. a test runner's worker thread, the handlers are left as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {sig: signal.getsignal(sig) for sig in TERMINATING}
    for sig in TERMINATING:
        # A signal ignored by whoever started us (nohup: SIGHUP) stays ignored.
        if previous[sig] is not signal.SIG_IGN:
            signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def run_child(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True)`` that, when interrupted, asks
    the child to stop (SIGTERM, so it cleans up too) before killing it."""
    with subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kwargs) as child:
        try:
            out, err = child.communicate()
        except BaseException:
            child.terminate()
            try:
                child.wait(timeout=_CHILD_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
    return subprocess.CompletedProcess(list(argv), child.returncode, out, err)
