"""DeepSpeed's op build never wedges a stage (issue 19): a build lock left by a killed build is taken
over and the op rebuilt; a lock a live process holds, or our own build lock, is waited for only up to
a limit, then the error names it. Every test builds in a temporary extensions folder, never the
shared cache."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matrix.methods.ops import OP, OpBuildError, _take_flock, clear_stale_lock

REPO = Path(__file__).resolve().parents[2]


def _holder(code: str) -> subprocess.Popen:
    """A child process that runs `code`, says 'ready' and then sleeps until killed."""
    proc = subprocess.Popen([sys.executable, "-c", code + "\nprint('ready', flush=True)\nimport time\ntime.sleep(120)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_lock_no_process_holds_is_taken_over_and_the_half_built_op_removed(tmp_path):
    folder = tmp_path / OP
    folder.mkdir()
    (folder / "lock").touch()
    (folder / "shm.o").write_bytes(b"\x7fELF half")  # a build killed between compiling and linking
    said = []
    assert clear_stale_lock(folder, wait_s=5, say=said.append) is True
    assert not folder.exists()
    assert len(said) == 1 and f"taking over the stale build lock {folder / 'lock'}" in said[0]
    assert clear_stale_lock(folder, wait_s=5, say=said.append) is False and len(said) == 1  # no lock: nothing to do


def test_a_lock_a_live_process_holds_is_waited_for_up_to_the_limit_and_named(tmp_path):
    folder = tmp_path / OP
    folder.mkdir()
    lock = folder / "lock"
    # What torch's FileBaton does while it builds: the lock created with O_EXCL and kept open.
    proc = _holder(f"import os\nfd = os.open({str(lock)!r}, os.O_CREAT | os.O_EXCL)")
    try:
        t = time.monotonic()
        with pytest.raises(OpBuildError) as caught:
            clear_stale_lock(folder, wait_s=1.0, say=lambda s: None)
        assert 1.0 <= time.monotonic() - t < 30
    finally:
        proc.kill()
        proc.wait()
    assert f"waited 1 s for the build lock {lock}, held by pid {proc.pid}" in str(caught.value)
    assert lock.exists()  # a live builder's lock is not touched


def test_our_own_build_lock_is_waited_for_up_to_the_limit_and_named(tmp_path):
    path = tmp_path / f"{OP}.build.lock"
    proc = _holder(f"import fcntl, os\nfd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
                   f"fcntl.flock(fd, fcntl.LOCK_EX)")
    try:
        with pytest.raises(OpBuildError, match=rf"waited 0.5 s for {path} \(another process of this project"):
            _take_flock(path, wait_s=0.5)
    finally:
        proc.kill()
        proc.wait()
    fd = _take_flock(path, wait_s=0.5)  # its holder died: the kernel released it
    os.close(fd)


STAGE = """
import json, sys
from matrix.runner.executor import execute_stage
args = json.loads(sys.argv[1])
payload = execute_stage("train", "0" * 64, "train probe", args["params"], args["inputs"], args["final"], args["tmp"],
                        args["run"], 1, 0, None, 1800)
print(json.dumps(payload["result"]["deepspeed_stage"]))
"""


@pytest.mark.slow
def test_a_train_stage_completes_after_a_killed_build_left_its_lock_and_a_half_built_op(tiny_world, hp, tmp_path):
    """The issue's reproduction: the lock and `shm.o` without the library, as a run killed during the
    op's first build leaves them. Before, every train stage waited on the lock forever; now the stage
    takes it over, rebuilds the op and trains, within the bound of this subprocess's timeout."""
    extensions = tmp_path / "torch_extensions"
    folder = extensions / OP
    folder.mkdir(parents=True)
    (folder / "lock").touch()
    (folder / "shm.o").write_bytes(b"\x7fELF half")
    hour_ago = time.time() - 3600
    os.utime(folder / "lock", (hour_ago, hour_ago))
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "examples.json").write_text(json.dumps(tiny_world.records[:8]))
    cfg = hp(deepspeed={"stage": 0}, epochs=1, batch_size=4, micro_batch_size=4)
    args = {"params": {"objective": "sft", "hp": cfg},
            "inputs": {"model": [str(tiny_world.base), {"model_dir": ".", "template": None}],
                       "examples": [str(tmp_path / "examples"), {}],
                       "data": [str(tmp_path), {"image_root": str(tiny_world.image_root)}]},
            "final": str(tmp_path / "final"), "tmp": str(tmp_path / "tmp"), "run": str(tmp_path)}
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", STAGE, json.dumps(args)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the train stage did not finish within 900 s: waiting on {folder / 'lock'}?")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "0"  # trained under DeepSpeed ZeRO-0
    log = (tmp_path / "final" / "stage.log").read_text()
    assert f"taking over the stale build lock {folder / 'lock'}" in log
    assert int(re.search(r"left (\d+) s ago", log).group(1)) >= 3600
    assert (folder / f"{OP}.so").is_file() and not (folder / "lock").exists()


def test_needs_op_only_for_deepspeed_training():
    from matrix.methods.ops import needs_op
    from matrix.runner.stage import Stage

    plain = Stage("train", {"objective": "sft", "hp": {"deepspeed": None}})
    ds = Stage("train", {"objective": "sft", "hp": {"deepspeed": {"stage": 2}}})
    assert not needs_op([plain, Stage("sleep", {})]) and needs_op([plain, ds])


@pytest.mark.slow
def test_the_sweeps_prebuild_ends_within_its_limit_naming_a_lock_a_live_process_holds(tmp_path, monkeypatch):
    """`matrix run` builds the op before its first stage in a child process with a limit: a lock that
    a live process (a DeepSpeed build outside this project) holds makes it give up with a line naming
    the lock, and the sweep goes on (its train stages then wait, with their own limit)."""
    from matrix.methods.ops import prebuild

    folder = tmp_path / OP
    folder.mkdir()
    lock = folder / "lock"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    proc = _holder(f"import os\nfd = os.open({str(lock)!r}, os.O_CREAT | os.O_EXCL)")
    said = []
    try:
        assert prebuild(said.append, wait_s=1.0) is False
    finally:
        proc.kill()
        proc.wait()
    assert said[0].startswith(f"building DeepSpeed's {OP} op into {tmp_path}")
    assert f"waited 1 s for the build lock {lock}, held by pid {proc.pid}" in said[-1]
    assert "each train stage will try again" in said[-1]


def test_a_sweep_prebuilds_only_when_a_deepspeed_train_stage_is_still_to_run(monkeypatch):
    from types import SimpleNamespace

    import matrix.methods.ops
    from matrix.runner import sweep
    from matrix.runner.stage import Stage

    calls = []
    monkeypatch.setattr(matrix.methods.ops, "prebuild", lambda say, stop=None: calls.append(say))
    ds = Stage("train", {"objective": "sft", "hp": {"deepspeed": {"stage": 2}}})
    planned = SimpleNamespace(graph=SimpleNamespace(stages={ds.key: ds}))
    sweep._prebuild_ops(planned, {ds.key: SimpleNamespace(status="done")}, print)  # cached: nothing to build
    assert calls == []
    sweep._prebuild_ops(planned, {}, print)
    assert calls == [print]
