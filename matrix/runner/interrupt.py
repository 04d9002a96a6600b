"""Stop requests: Ctrl-C (SIGINT), preemption (SIGTERM, what SLURM and Kubernetes send) and a closed
terminal (SIGHUP) all mean "stop scheduling, leave the store true, exit".

The handlers only record the request; the executor looks at it between two steps of its loop. That
is deliberate: an exception raised wherever the main thread happens to be (inside a store transaction,
inside a Ray call) leaves half-done work, and cancelling Ray tasks from there raced their replies and
aborted the driver inside Ray's core worker ("Tried to complete task that was not pending", a fatal
check in task_manager.cc) about one Ctrl-C in three. A second signal while the first is handled
raises KeyboardInterrupt, for a user who does not want to wait.
"""
from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequests:
    """Records stop signals while active (a context manager); `.signum` is the first one received."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + int(self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signum = signum

    def install(self) -> None:
        """(Re)install the handlers: Ray's driver start-up installs a SIGTERM handler of its own that exits
        at once, so this is called again after connecting. A signal that was ignored when the process
        started (`nohup`, `cmd &` in a non-interactive shell) stays ignored, as the user asked."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread (e.g. the API called from a worker thread)
        for s in SIGNALS:
            current = signal.getsignal(s)
            if s not in self._previous:
                self._previous[s] = current
            if self._previous[s] is signal.SIG_IGN:
                continue
            signal.signal(s, self._handle)

    def restore(self) -> None:
        for s, handler in self._previous.items():
            if handler is not None:
                signal.signal(s, handler)
        self._previous.clear()

    def __enter__(self) -> "StopRequests":
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()
