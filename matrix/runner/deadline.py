"""A stage's wall-clock limit, enforced inside its own worker.

Why in the worker and not by the driver cancelling the Ray task: `ray.cancel(force=True)` kills the
worker while its reply may already be on the way, and a reply racing the cancel crashes Ray's core
worker in the driver ("Tried to complete task that was not pending"). A limit the worker keeps ends
the task the ordinary way, with an exception the driver records like any other stage error:

  * at the limit, SIGALRM raises `StageTimeout` in the stage's thread (Ray runs a task in its
    worker's main thread). It interrupts sleeps and waits; `finally` blocks run, so subprocesses
    (the launcher's ranks, a compiler) are stopped by their owners. It is a BaseException, like
    KeyboardInterrupt, so stage code that catches `Exception` (judge retries, best-effort clean-ups)
    cannot swallow it;
  * a stage stuck where no signal reaches it (inside a C call that never returns) is ended by a
    watchdog thread `grace_s` later: it writes the message beside the stage's temporary folder
    (`timeout_note`), kills the worker's children, then the worker itself. The driver finds the note
    and records the timeout instead of retrying a dead worker.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class StageTimeout(BaseException):
    """The stage ran past its wall-clock limit."""


def format_duration(seconds: float) -> str:
    """90 -> '1m 30s', 7260 -> '2h 01m', 5 -> '5s', 2.5 -> '2.5s'."""
    if seconds < 60:
        return f"{seconds:.3g}s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def timeout_message(label: str, kind: str, limit_s: float) -> str:
    return f"stage '{label}' timed out after {format_duration(limit_s)} (resources.{kind}.timeout)"


def timeout_note(tmp_root: str | Path, key: str) -> Path:
    """Where a worker killed at its limit leaves its message for the driver."""
    return Path(tmp_root) / f"{key[:16]}.timed-out"


def grace_s(limit_s: float) -> float:
    """How long past the limit the watchdog waits for the signal to take effect: 10%, 5 s to 2 min."""
    return min(120.0, max(5.0, 0.1 * limit_s))


def _kill_tree_and_exit(note: Path, message: str, waited_s: float) -> None:
    import psutil

    try:
        note.write_text(f"StageTimeout: {message}; it did not stop within {format_duration(waited_s)} of the "
                        f"limit, so its worker process was killed\n")
    except OSError:
        pass
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            continue
    os._exit(124)


@contextmanager
def deadline(limit_s: float | None, message: str, note: Path) -> Iterator[None]:
    """Run the body under a wall-clock limit: `StageTimeout(message)` at `limit_s`, the watchdog's
    kill `grace_s` later if the body still runs. No limit (None) or not the main thread: no signal,
    only the watchdog."""
    if not limit_s:
        yield
        return
    state = {"armed": True}
    use_signal = threading.current_thread() is threading.main_thread()

    def on_alarm(signum, frame):
        if state["armed"]:
            raise StageTimeout(message)

    previous = None
    if use_signal:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit_s)
    finished = threading.Event()

    waited_s = grace_s(limit_s) if use_signal else 0.0

    def watch() -> None:
        if not finished.wait(limit_s + waited_s):
            _kill_tree_and_exit(note, message, waited_s)

    threading.Thread(target=watch, name="stage-deadline", daemon=True).start()
    try:
        yield
    finally:
        state["armed"] = False
        finished.set()
        if use_signal:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
