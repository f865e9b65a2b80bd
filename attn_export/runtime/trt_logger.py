"""One TensorRT logger per process, with per-operation capture on top of it.

TensorRT treats the logger as a process-wide singleton: the one given to the first ``Builder`` or
``Runtime`` receives every later message, whatever logger later objects were created with (the
``ILogger`` documentation: "multiple instances of IRuntime and/or IBuilder must all use the same
logger"). A logger made per build or per runner therefore captures nothing after the first, and a
failure reads "no reason given". As Polygraphy's ``get_trt_logger()``, :func:`get_trt_logger`
makes one logger per ``tensorrt`` module and keeps it for the life of the process;
:func:`capture_log` collects what TensorRT says during one operation (a parse, a build, a
deserialisation) so that its error can quote TensorRT's reason.

TensorRT may call the logger from any thread and holds no lock while doing so: the logger takes
its own. A message logged on a thread with an open capture goes to that capture; one logged on a
thread without (a TensorRT worker thread) goes to every open capture, so it is never lost.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

LOG_CAPACITY = 256
"""Messages each capture and the process log keep (the newest): enough to quote TensorRT's
reason for a failure, bounded because a server runs for months."""

ERROR_SEVERITIES = ("ERROR", "INTERNAL_ERROR")

_LOGGERS: dict[int, object] = {}
_LOCK = threading.Lock()


class LogCapture:
    """What TensorRT logged during one operation (severity name, message), newest kept."""

    def __init__(self, capacity: int = LOG_CAPACITY) -> None:
        self.messages: deque[tuple[str, str]] = deque(maxlen=capacity)

    def errors(self) -> list[str]:
        return [m for s, m in self.messages if s in ERROR_SEVERITIES]

    def reason(self, last: int = 3, default: str = "no reason given") -> str:
        """The last ``last`` errors joined for a one-line message."""
        return "; ".join(self.errors()[-last:]) or default


def get_trt_logger(trt, min_severity: str = "WARNING"):
    """The process's ``trt.ILogger`` for the module ``trt`` (made on the first call).

    ``min_severity`` applies to the first call only: there is one logger, and messages below
    WARNING are not needed to explain a failure.
    """
    with _LOCK:
        logger = _LOGGERS.get(id(trt))
        if logger is None:
            logger = _LOGGERS[id(trt)] = _make_logger(trt, min_severity)
        return logger


def _make_logger(trt, min_severity: str):
    class ProcessLogger(trt.ILogger):
        """Routes each message to the open captures; keeps the newest in ``recent``."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.threshold = int(getattr(trt.ILogger.Severity, min_severity))
            self.recent: deque[tuple[str, str]] = deque(maxlen=LOG_CAPACITY)
            self.local = threading.local()
            self.open: list[LogCapture] = []
            self.lock = threading.Lock()

        def log(self, severity, msg) -> None:  # noqa: D102 (TensorRT's callback)
            if int(severity) > self.threshold:
                return
            entry = (severity.name, str(msg))
            with self.lock:
                self.recent.append(entry)
                mine = getattr(self.local, "stack", None)
                for capture in (mine or self.open):
                    capture.messages.append(entry)

        def errors(self) -> list[str]:
            return [m for s, m in self.recent if s in ERROR_SEVERITIES]

    return ProcessLogger()


@contextmanager
def capture_log(trt) -> Iterator[LogCapture]:
    """Collect what TensorRT logs while the block runs (nested captures each get a copy)."""
    logger = get_trt_logger(trt)
    capture = LogCapture()
    with logger.lock:
        if getattr(logger.local, "stack", None) is None:
            logger.local.stack = []
        logger.local.stack.append(capture)
        logger.open.append(capture)
    try:
        yield capture
    finally:
        with logger.lock:
            logger.local.stack.remove(capture)
            logger.open.remove(capture)
