"""What long commands print while they run: msrec's own progress on the terminal, library logging in
a log file.

TensorFlow, Beam, TFX and absl write thousands of lines per run (INFO logs, deprecation warnings, C++
messages straight to file descriptor 2). In quiet mode (the default of the commands) all of it goes
to a log file, and the terminal gets one line per pipeline component with its wall time, plus what
the command prints itself. ``--verbose`` keeps everything on the terminal.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
import sys
import time
import warnings
from typing import IO, Iterator

_COMPONENT = re.compile(r"Component (\S+) is (running|finished)\.")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_library: IO[str] | None = None  # the log file while quiet output is on


def cpu_seconds() -> float:
    """CPU time of this process (every thread) and of its reaped children, e.g. Beam workers."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class ComponentClock(logging.Handler):
    """Wall and CPU seconds of each TFX component, from the start and end lines the local runners
    (TFX's, msrec's) log through absl at INFO; ``times`` maps a component to (wall, cpu)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._started: dict[str, tuple[float, float]] = {}
        self.times: dict[str, tuple[float, float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = _COMPONENT.fullmatch(record.getMessage())
        if not match:
            return
        name, state = match.groups()
        now = (time.monotonic(), cpu_seconds())
        if state == "running":
            self._started[name] = now
            return
        wall0, cpu0 = self._started.pop(name, now)
        # a runner that launches components in other processes (local_runner.py) measures them there
        self.times[name] = (getattr(record, "wall_seconds", now[0] - wall0),
                            getattr(record, "cpu_seconds", now[1] - cpu0))
        self.finished(name, record)

    def finished(self, name: str, record: logging.LogRecord) -> None:
        """Called when a component ends, with its times in ``self.times[name]``."""


class ComponentProgress(ComponentClock):
    """One terminal line per finished component, with its wall and CPU time."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream

    def finished(self, name: str, record: logging.LogRecord) -> None:
        wall, cpu = self.times[name]
        try:  # as logging.StreamHandler: a closed terminal must not fail the component that logged
            self.stream.write(f"  {name:<28}{wall:>8.1f} s  (CPU {cpu:.1f} s)\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)


def show_progress(log_path: str | None = None, verbose: bool = False) -> str | None:
    """Set up what the terminal shows for the rest of the process; returns the log file's path.

    Quiet (``log_path`` given, not ``verbose``): Python logging at INFO and warnings go to
    ``log_path``, and so does whatever a library writes to file descriptors 1 and 2 (TensorFlow's C++
    messages); ``sys.stdout`` and ``sys.stderr`` stay on the terminal for msrec's own lines, except
    inside :func:`library_output`. Verbose or no log path: absl and msrec log INFO to the terminal.
    """
    global _library
    progress_stream = sys.stderr
    root = logging.getLogger()
    if log_path and not verbose:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        _library = open(log_path, "a", buffering=1, encoding="utf-8")
        sys.stdout.flush()
        sys.stderr.flush()
        # the terminal survives as new descriptors; 1 and 2 become the log for C/C++ writers
        terminal_out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        terminal_err = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8")
        os.dup2(_library.fileno(), 1)
        os.dup2(_library.fileno(), 2)
        sys.stdout, sys.stderr = terminal_out, terminal_err
        progress_stream = terminal_err
        for handler in list(root.handlers):
            root.removeHandler(handler)
        file_handler = logging.StreamHandler(_library)
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(file_handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        warnings.simplefilter("default")
        _quiet_absl()
    else:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=_FORMAT)
        for name in ("absl", "msrec"):
            logging.getLogger(name).setLevel(logging.INFO)
    absl_logger = logging.getLogger("absl")
    for handler in [h for h in absl_logger.handlers if isinstance(h, ComponentProgress)]:
        absl_logger.removeHandler(handler)  # set up again: one line per component, to the new stream
    absl_logger.addHandler(ComponentProgress(progress_stream))
    absl_logger.setLevel(logging.INFO)
    return os.path.abspath(log_path) if _library is not None else None


def _quiet_absl() -> None:
    """absl puts its own stderr handler on the root logger when it is first used; have it write to
    the log instead, at INFO."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    handler = absl_logging.get_absl_handler()
    handler.python_handler.stream = _library
    logging.getLogger().removeHandler(handler)


@contextlib.contextmanager
def library_output() -> Iterator[None]:
    """While quiet, what libraries print to ``sys.stdout``/``sys.stderr`` in this block goes to the log
    (Keras' epoch lines, Beam's and TFX's prints)."""
    if _library is None:
        yield
        return
    with contextlib.redirect_stdout(_library), contextlib.redirect_stderr(_library):
        yield
