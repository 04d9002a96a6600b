"""The run lock on filesystems without file locks (NFS mounted `nolock` on some kernels, some FUSE
filesystems): refused with a clear error, never a run without a lock; on those with locks, held."""
import errno
import fcntl
import os

import pytest

from matrix.errors import UserError
from matrix.lock import RunLock


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_filesystem_without_locks_is_refused_clearly(tmp_path, monkeypatch, code):
    real_flock = fcntl.flock

    def no_locks(fd, op):
        if op & fcntl.LOCK_EX:
            raise OSError(code, os.strerror(code))
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", no_locks)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(UserError) as e:
        RunLock(tmp_path).acquire()
    assert str(tmp_path / "run.lock") in str(e.value)
    assert "does not support file locks" in str(e.value) and os.strerror(code) in str(e.value)
    assert set(os.listdir("/proc/self/fd")) == before  # the descriptor is closed


def test_other_flock_errors_are_not_disguised(tmp_path, monkeypatch):
    def broken(fd, op):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(OSError) as e:
        RunLock(tmp_path).acquire()
    assert e.value.errno == errno.EIO


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm (tmpfs) on this machine")
def test_lock_holds_on_tmpfs(tmp_path):
    """The filesystems at hand (ext4 under tmp_path, tmpfs under /dev/shm) implement flock: a second
    taker is refused while the first holds the lock."""
    import shutil
    import tempfile

    shm = tempfile.mkdtemp(dir="/dev/shm")
    for root in (tmp_path, shm):
        first = RunLock(root).acquire()
        try:
            second = RunLock(root)
            fd = os.open(second.path, os.O_RDWR)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
        finally:
            first.release()
    shutil.rmtree(shm)
