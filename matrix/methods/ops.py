"""DeepSpeed's compiled ops: built ahead of a sweep, and never a wait without a bound.

On the CPU accelerator DeepSpeed compiles `deepspeed_shm_comm` on the first `init_distributed` of a
process (~35 s) into `$TORCH_EXTENSIONS_DIR/deepspeed_shm_comm/`. torch guards that build with its
FileBaton: a `lock` file created with O_EXCL, held open by the builder and removed when the build
ends. A builder killed mid-build (a sweep interrupted, a node preempted) leaves the file behind, and
every later process waits for it to vanish with no limit and no word (`FileBaton.wait`): the file
names no owner.

`ensure_built` is the one way this project builds it, in the train stage before DeepSpeed's own
call (`matrix.methods._dist`), in `make setup` and before a sweep's first stage (`python -m matrix.methods.ops`):
  * it first takes an fcntl lock of its own beside the op folder (`<op>.build.lock`). The kernel
    drops it when its holder dies, however it dies, so waiting for it is waiting for a live builder,
    and that wait has a limit;
  * holding it, a FileBaton `lock` that no process on this machine holds open belongs to a builder
    that is gone: the op folder (half-built objects included) is removed, a line says so, and the op
    is rebuilt. A live holder (a DeepSpeed run outside this project) is waited for, up to the limit,
    then the error names the lock and the pid that holds it.
Why not an age rule: a build takes 35-50 s alone, minutes on a loaded machine, so no age tells a slow
builder from a dead one; an open file descriptor does. What this cannot see is a DeepSpeed process
outside this project building into the same folder from another machine at that moment: this
project's builders on other machines are excluded by the fcntl lock, where the file system honours it.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from pathlib import Path

OP = "deepspeed_shm_comm"
BUILD_WAIT_S = 900.0  # for another builder of ours, or a live foreign one: a build takes 35-50 s alone
POLL_S = 0.2


class OpBuildError(RuntimeError):
    """The op could not be built within its limit; the message names what was waited for."""


def extensions_dir() -> Path:
    """Where torch builds JIT extensions: `$TORCH_EXTENSIONS_DIR` (matrix always sets it)."""
    from matrix.methods._dist import default_extensions_dir

    default_extensions_dir()
    return Path(os.environ["TORCH_EXTENSIONS_DIR"])


def _builder():
    """DeepSpeed's builder of the comm op for this accelerator, or None where it builds none (CUDA)."""
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return None
    return builder


def is_built(root: Path | None = None) -> bool:
    """Cheap check without importing DeepSpeed: the library is there and no build is under way."""
    folder = (root or extensions_dir()) / OP
    return (folder / f"{OP}.so").is_file() and not (folder / "lock").exists()


def holders(path: Path) -> list[int]:
    """Pids of the processes on this machine that have `path` open (FileBaton's builder keeps its
    lock file open from creating it to removing it)."""
    import psutil

    target = os.path.realpath(path)
    pids = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if any(f.path == target for f in proc.open_files()):
                pids.append(proc.info["pid"])
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or another user's: not ours to see
    return pids


def _take_flock(path: Path, wait_s: float) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise OpBuildError(f"waited {wait_s:g} s for {path} (another process of this project is "
                                   f"building DeepSpeed's {OP} op) and it was not released") from None
            time.sleep(POLL_S)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd


def clear_stale_lock(folder: Path, wait_s: float, say=print) -> bool:
    """With the build lock held: remove the op folder if its FileBaton lock was left by a dead builder
    (True); wait (bounded) while a live process holds it; False when there is no lock."""
    lock = folder / "lock"
    deadline = time.monotonic() + wait_s
    while lock.exists():
        live = holders(lock)
        if not live:
            age = time.time() - lock.stat().st_mtime if lock.exists() else 0.0
            say(f"taking over the stale build lock {lock} (left {age:.0f} s ago by a build that no longer "
                f"runs; no process holds it): removing the half-built op and rebuilding")
            shutil.rmtree(folder, ignore_errors=True)
            return True
        if time.monotonic() >= deadline:
            raise OpBuildError(f"waited {wait_s:g} s for the build lock {lock}, held by pid "
                               f"{', '.join(map(str, live))} (a DeepSpeed build outside this project); "
                               f"stop that process, or remove the file if it is not building")
        time.sleep(POLL_S)
    return False


def ensure_built(wait_s: float = BUILD_WAIT_S, say=print) -> Path | None:
    """Build (or load) DeepSpeed's comm op under the build lock; returns its folder, None where this
    accelerator needs no op. Every wait is bounded by `wait_s` and ends in an `OpBuildError`."""
    builder = _builder()
    if builder is None:
        return None
    root = extensions_dir()
    folder = root / builder.NAME
    fd = _take_flock(root / f"{builder.NAME}.build.lock", wait_s)
    try:
        clear_stale_lock(folder, wait_s, say)
        if not (folder / f"{builder.NAME}.so").is_file():
            say(f"building DeepSpeed's {builder.NAME} op into {folder} (once per extensions folder, ~35 s)")
        builder.load(verbose=False)
    finally:
        os.close(fd)  # releases the flock
    return folder


def needs_op(stages) -> bool:
    """Whether any of these stages trains under DeepSpeed (the op is built on its first group)."""
    return any(s.kind == "train" and (s.params.get("hp") or {}).get("deepspeed") is not None for s in stages)


def prebuild(say, wait_s: float = BUILD_WAIT_S, stop=lambda: False) -> bool:
    """Build the op in a child process before a sweep's first stage (the driver never imports
    DeepSpeed), with its own limit; its lines go to `say`. False if it failed (or `stop()` became
    true: a stop signal ends the build, whose lock the next build takes over as stale): the train
    stages then build it themselves and report their error."""
    import subprocess
    import time

    if is_built():
        return True
    say(f"building DeepSpeed's {OP} op into {extensions_dir()} before the first train stage "
        f"(once per extensions folder, ~35 s)")
    proc = subprocess.Popen([sys.executable, "-m", "matrix.methods.ops", str(wait_s)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + wait_s + 300
    while proc.poll() is None and time.monotonic() < deadline and not stop():
        time.sleep(0.25)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
        if not stop():
            say(f"the op build did not finish within {wait_s + 300:g} s; each train stage will build it itself")
        return False
    lines = [ln for ln in proc.communicate()[0].splitlines() if ln.strip()]
    if proc.returncode:
        say(f"the op build failed ({lines[-1] if lines else f'exit {proc.returncode}'}); "
            f"each train stage will try again and report its error")
        return False
    say(lines[-1] if lines else "DeepSpeed ops ready")
    return True


def main(argv: list[str]) -> int:
    """`python -m matrix.methods.ops [WAIT_S]`: build the op now (make setup, and `matrix run` before a
    sweep's first train stage), so that no stage pays for it or can be caught by it."""
    wait_s = float(argv[0]) if argv else BUILD_WAIT_S
    if is_built():
        print(f"DeepSpeed ops ready: {extensions_dir() / OP}")
        return 0
    try:
        folder = ensure_built(wait_s)
    except OpBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"DeepSpeed ops ready: {folder}" if folder else "DeepSpeed needs no compiled op on this accelerator")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
