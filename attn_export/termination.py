"""SIGTERM ends a command the way Ctrl-C does, also as PID 1 in a container.

``docker stop`` sends SIGTERM to the container's PID 1, which is ``attn-export`` itself when the
image runs without an init. The kernel delivers to a namespace's init only the signals it has a
handler for: with the default disposition SIGTERM is silently dropped, the command runs on, and
Docker kills it outright ten seconds later, in the middle of whatever it was writing. So every
command installs :func:`install_sigterm_handler`, which turns SIGTERM into :class:`Terminated`, a
``KeyboardInterrupt``: every path that already cleans up after a Ctrl-C (an artefact set discards
its staging folder, locks are released) does the same for a SIGTERM, and the command ends with
exit status 143 (128 + SIGTERM, what a shell shows for a terminated process).

:func:`redeliver` re-delivers a signal that was held back (an artefact set's commit defers
SIGINT/SIGTERM so that its renames are never split) in a form PID 1 cannot ignore either.
"""

from __future__ import annotations

import signal
import threading

EXIT_STATUS = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler: handled wherever a Ctrl-C is, reported as a termination."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def _raise_terminated(signum: int, _frame) -> None:
    raise Terminated(signum)


def install_sigterm_handler() -> bool:
    """Make SIGTERM raise :class:`Terminated` in the main thread, unless someone (a server that
    drains first, a test harness) already handles it. Returns whether it was installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _raise_terminated)
    return True


def redeliver(signum: int, handler) -> None:
    """Deliver ``signum``, held back while ``handler`` was being restored, so that it takes effect.

    A Python handler runs (``raise_signal`` reaches it even as PID 1). The default disposition of
    SIGTERM would be dropped by the kernel for a namespace's init, so it becomes
    :class:`Terminated` instead; an ignored signal stays ignored.
    """
    if handler is signal.SIG_IGN:
        return
    if handler is signal.SIG_DFL or handler is None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)
    signal.raise_signal(signum)
