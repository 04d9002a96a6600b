"""One driver per run directory: an advisory lock that dies with its holder.

`fcntl.flock` is released by the kernel when the holding process exits for any reason (kill -9
included), so a stale lock is never a problem to take over; the JSON beside it says who held it.

Hand-written rather than `filelock.FileLock` (which also uses flock, so takes over stale locks the same
way): the lock file's content is part of the protocol. The holder writes who it is and the Ray processes
it started through the descriptor that holds the lock, a contender reads it to name the holder, and the
next driver reads what its dead predecessor left (to end orphaned Ray workers) before writing its own;
filelock offers no public handle on the descriptor it holds.

Shared filesystems: on a filesystem that does not implement locks (an NFS mount with `nolock` refuses
them on some kernels, some FUSE filesystems) flock fails with ENOLCK / EOPNOTSUPP / ENOSYS: that is a clear
error here, never a run without a lock. What was checked, and what an NFS mount needs, is in
docs/CLUSTER.md.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from matrix.errors import UserError

NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}  # flock(2): the filesystem has no locks


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "run.lock"
        self._fd: int | None = None
        self.previous: dict | None = None  # who held it last, if they did not release it cleanly

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
            raise UserError(f"{self.path.parent}: another `matrix run` ({who}) is driving this run directory") from None
        except OSError as e:
            os.close(fd)
            if e.errno in NO_LOCKS:
                raise UserError(
                    f"{self.path}: the filesystem of the run directory does not support file locks "
                    f"(flock: {os.strerror(e.errno)}), so two drivers could write one run at once. Put the run "
                    f"directory on a filesystem with locks (NFSv4, or NFSv3 mounted without 'nolock' with lockd "
                    f"running; see docs/CLUSTER.md)") from None
            raise
        self.previous = _read(fd) or None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode(), 0)
        self._fd = fd
        return self

    def note(self, **info) -> None:
        """Add facts for a later taker-over (e.g. the embedded Ray session this driver started)."""
        if self._fd is None:
            return
        data = {**_read(self._fd), **info}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(data).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict:
    try:
        raw = os.pread(fd, 1 << 16, 0)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
