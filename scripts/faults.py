"""Fault injection: the quickstart's gt-dpo cell under SIGKILL, SIGTERM and SIGINT at random moments, a
full disk and a damaged artifact; prints what a researcher would have lost.

    python scripts/faults.py [--each 10] [--seed 0] [--workdir DIR] [--budget-s 2400]

Everything runs on this machine (embedded Ray on 127.0.0.1). Steps:
1. an undisturbed run of the cell (the reference report, and how long a run takes);
2. runs stopped by each signal at random moments (after a random number of the stages still to do, a
   random delay) until each signal has stopped `--each` of them (a run that finishes before its moment
   does not count), every one resumed by the next (a run directory
   that completes is compared with the reference and a new one is started);
3. a full disk (root only: a small tmpfs as the run directory, then grown, `mount -o remount`);
4. a damaged artifact (the trained adapter deleted, `scores.jsonl` truncated) in a finished run.
Printed at the end: finished stages lost, stages computed twice, runs ending with `running` rows,
tracebacks printed, and whether every final report equals the undisturbed one. Exit 1 if any is off.
The whole script stops by itself after `--budget-s` seconds (what was not reached is reported).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "quickstart.yaml"
CELL = ["--only", "method=gt-dpo"]


@dataclass
class Tally:
    disturbances: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    twice: int = 0
    running_rows: int = 0
    tracebacks: int = 0
    reports: list[bool] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def matrix_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "matrix", *args]


def run_args(run_dir: Path) -> list[str]:
    return ["run", str(SPEC), *CELL, "--set", f"output_dir={run_dir}"]


def stages(run_dir: Path) -> dict[str, tuple[str, float | None, int]]:
    """key -> (status, finished, attempts)."""
    db = run_dir / "matrix.db"
    if not db.exists():
        return {}
    with sqlite3.connect(db, timeout=30) as con:
        return {k: (s, f, a) for k, s, f, a in con.execute("SELECT key, status, finished, attempts FROM stages")}


def report(run_dir: Path) -> str:
    proc = subprocess.run(matrix_cmd("report", str(run_dir), "--format", "csv"), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    return proc.stdout


def compare_done(before: dict, after: dict, tally: Tally, what: str) -> None:
    """Every stage done before a disturbance is still done, with the same finish time (not recomputed)."""
    for key, (status, finished, _) in before.items():
        if status != "done":
            continue
        now = after.get(key)
        if now is None or now[0] != "done":
            tally.lost += 1
            tally.notes.append(f"{what}: stage {key[:12]} was done and is now {now[0] if now else 'gone'}")
        elif now[1] != finished:
            tally.twice += 1
            tally.notes.append(f"{what}: stage {key[:12]} was computed again")


def check_exit(proc: subprocess.CompletedProcess | subprocess.Popen, err: str, tally: Tally, what: str) -> None:
    if "Traceback" in err:
        tally.tracebacks += 1
        tally.notes.append(f"{what}: traceback printed:\n{err[-1500:]}")


def running_rows(run_dir: Path) -> int:
    return sum(1 for s, _, _ in stages(run_dir).values() if s == "running")


def finish(run_dir: Path, expected: str, tally: Tally, what: str) -> None:
    """Run to completion (undisturbed) and compare the report with the reference."""
    before = stages(run_dir)
    proc = subprocess.run(matrix_cmd(*run_args(run_dir)), cwd=REPO, capture_output=True, text=True, timeout=1800)
    check_exit(proc, proc.stderr, tally, what + " (resume)")
    compare_done(before, stages(run_dir), tally, what + " (resume)")
    same = proc.returncode == 0 and report(run_dir) == expected
    tally.reports.append(same)
    if not same:
        tally.notes.append(f"{what}: final report differs (exit {proc.returncode})\n{proc.stderr[-1500:]}")


def disturb(run_dir: Path, signum: int, after: int, delay: float, tally: Tally) -> tuple[bool, float]:
    """One run stopped by `signum` `delay` seconds after `after` more of its stages are done (a random
    moment that lets the run progress: a signal drawn on the clock alone falls in the longest stage again
    and again, and a resumed run never gets past it). Returns (finished before the signal, seconds from
    the start to the signal or the end)."""
    before = stages(run_dir)
    target = sum(st == "done" for st, _, _ in before.values()) + after
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as out_f, tempfile.TemporaryFile("w+") as err_f:
        proc = subprocess.Popen(matrix_cmd(*run_args(run_dir)), cwd=REPO, stdout=out_f, stderr=err_f, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        signal_at = None
        while proc.poll() is None:
            now = time.time()
            if signal_at is None and sum(st == "done" for st, _, _ in stages(run_dir).values()) >= target:
                signal_at = now + delay
            if signal_at is not None and now >= signal_at:
                proc.send_signal(signum)
                break
            time.sleep(0.3)
        moment = time.time() - t0
        proc.wait(timeout=600)
        err_f.seek(0)
        err = err_f.read()
    name = signal.Signals(signum).name
    what = f"{name} at {moment:.1f}s ({after} stages, then {delay:.1f}s) in {run_dir.name}"
    check_exit(proc, err, tally, what)
    if proc.returncode == 0:
        compare_done(before, stages(run_dir), tally, what)
        return True, moment
    tally.disturbances[name] = tally.disturbances.get(name, 0) + 1  # a run the signal really stopped
    if signum != signal.SIGKILL:
        expected_code = 128 + signum
        # -signum: the signal came before the CLI had installed its handler (Python still starting up):
        # the default action ended the process, which a shell reports as 128+N too; nothing had started.
        if proc.returncode not in (expected_code, -signum):
            tally.notes.append(f"{what}: exit {proc.returncode}, expected {expected_code}\n{err[-800:]}")
        # Rows this run left running. A row already running before it, with the same start count, was left
        # by an earlier SIGKILL and is the next driver's to close (`forget_running`): a signal that ends
        # this run before it holds the lock (Python still starting) leaves it as it was.
        n = sum(1 for k, (st, _, att) in stages(run_dir).items()
                if st == "running" and before.get(k, ("", None, -1))[::2] != ("running", att))
        tally.running_rows += n > 0
        if n:
            tally.notes.append(f"{what}: {n} rows left running")
    compare_done(before, stages(run_dir), tally, what)
    return False, moment


def full_disk(workdir: Path, expected: str, tally: Tally) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        tally.notes.append("full disk: skipped (needs root and mount)")
        return
    mnt = workdir / "small-disk"
    mnt.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True).returncode:
        tally.notes.append("full disk: skipped (this container may not mount a tmpfs)")
        return
    try:
        run_dir = mnt / "run"
        proc = subprocess.run(matrix_cmd(*run_args(run_dir)), cwd=REPO, capture_output=True, text=True, timeout=1800)
        check_exit(proc, proc.stderr, tally, "full disk")
        ok = proc.returncode != 0 and ("free" in proc.stderr or "space" in proc.stderr)
        # A full store cannot record even its own clean-up: the stopped stage's row may stay `running`
        # until the next run, which marks it interrupted first (checked after the resume below).
        print(f"full disk (6 MiB tmpfs): exit {proc.returncode}, {running_rows(run_dir)} rows left running; last error line: "
              f"{(proc.stderr.strip().splitlines() or [''])[-1][:200]}", flush=True)
        if not ok:
            tally.notes.append(f"full disk: expected a clear non-zero exit, got {proc.returncode}\n{proc.stderr[-1500:]}")
        subprocess.run(["mount", "-o", "remount,size=2g", str(mnt)], check=True)
        finish(run_dir, expected, tally, "full disk")
        # Rows this run left running. A row already running before it, with the same start count, was left
        # by an earlier SIGKILL and is the next driver's to close (`forget_running`): a signal that ends
        # this run before it holds the lock (Python still starting) leaves it as it was.
        n = sum(1 for k, (st, _, att) in stages(run_dir).items()
                if st == "running" and before.get(k, ("", None, -1))[::2] != ("running", att))
        tally.running_rows += n > 0
        if n:
            tally.notes.append(f"full disk: {n} rows still running after the resume")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def damaged(run_dir: Path, expected: str, tally: Tally) -> None:
    """Delete the trained adapter and truncate a scores file: the next run must redo those stages."""
    victims = sorted((run_dir / "artifacts" / "train").glob("*/**/adapter_model.safetensors"))
    scores = sorted((run_dir / "artifacts" / "evaluate").glob("*/scores.jsonl"))
    if not victims or not scores:
        tally.notes.append("damaged artifact: nothing to damage (no adapter / scores file found)")
        return
    victims[0].unlink()
    text = scores[0].read_text()
    scores[0].write_text(text[: len(text) // 2])
    before = {k: v for k, v in stages(run_dir).items()}
    proc = subprocess.run(matrix_cmd(*run_args(run_dir)), cwd=REPO, capture_output=True, text=True, timeout=1800)
    check_exit(proc, proc.stderr, tally, "damaged artifact")
    after = stages(run_dir)
    redone = sum(1 for k, v in before.items() if after.get(k) and after[k][1] != v[1])
    noticed = redone >= 2 and "damaged" in (proc.stdout + proc.stderr).lower()
    print(f"damaged artifact: exit {proc.returncode}, {redone} stages redone", flush=True)
    if not noticed:
        tally.notes.append(f"damaged artifact: not detected (redone {redone})\n{proc.stdout[-800:]}{proc.stderr[-800:]}")
    same = proc.returncode == 0 and report(run_dir) == expected
    tally.reports.append(same)
    if not same:
        tally.notes.append("damaged artifact: final report differs from the undisturbed run")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--each", type=int, default=10, help="disturbances per signal (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    ap.add_argument("--budget-s", type=float, default=2400, help="stop starting new disturbances after this")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="matrix-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    tally = Tally()

    ref = workdir / "reference"
    proc = subprocess.run(matrix_cmd(*run_args(ref)), cwd=REPO, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        print(f"the undisturbed run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return 1
    undisturbed_s = time.time() - t0
    expected = report(ref)
    print(f"undisturbed run of the gt-dpo cell: {undisturbed_s:.0f}s; workdir {workdir}", flush=True)

    # Until every signal has really stopped `--each` runs (a run that finishes before its moment counts
    # for nothing). The moment: after a random number of the stages still to do, a random delay up to the
    # longest of them (its time in the undisturbed run; plus the start-up when that number is 0), so that
    # it can fall in the start-up or in any stage still to run.
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
    with sqlite3.connect(ref / "matrix.db") as con:
        wall = {k: float(w or 0.0) for k, w in con.execute("SELECT key, wall_s FROM stages")}
        first = con.execute("SELECT MIN(started) FROM stages").fetchone()[0]
    startup_s = max(1.0, float(first) - t0) if first else 10.0  # launch to the first stage: imports, Ray

    n_dir = i = 0
    run_dir = workdir / f"disturbed-{n_dir}"
    while min(tally.disturbances.get(s.name, 0) for s in signals) < args.each:
        if time.time() - t0 > args.budget_s:
            tally.notes.append(f"budget reached after {i} tries")
            break
        fewest = min(tally.disturbances.get(s.name, 0) for s in signals)
        signum = rng.choice([s for s in signals if tally.disturbances.get(s.name, 0) == fewest])
        now_done = {k for k, (st, _, _) in stages(run_dir).items() if st == "done"}
        left = [k for k in wall if k not in now_done]
        after = rng.randrange(len(left)) if left else 0
        # From the launch (after == 0) the run first spends its start-up (imports, Ray) before any stage.
        delay = rng.uniform(0.0, max((wall[k] for k in left), default=1.0) + (startup_s if after == 0 else 0.0))
        finished, moment = disturb(run_dir, signum, after, delay, tally)
        i += 1
        print(f"{i:3d} {signal.Signals(signum).name:7s} at {moment:5.1f}s ({after} stages, then {delay:4.1f}s): "
              f"{'finished first' if finished else 'stopped'} ({run_dir.name}, "
              f"{sum(st == 'done' for st, _, _ in stages(run_dir).values())} stages done)", flush=True)
        if finished:
            same = report(run_dir) == expected
            tally.reports.append(same)
            if not same:
                tally.notes.append(f"{run_dir.name}: report differs from the undisturbed run")
            n_dir += 1
            run_dir = workdir / f"disturbed-{n_dir}"
    if stages(run_dir):
        finish(run_dir, expected, tally, run_dir.name)
    full_disk(workdir, expected, tally)
    damaged(ref, expected, tally)

    print()
    print(f"disturbances: {json.dumps(tally.disturbances)} in {time.time() - t0:.0f}s")
    print(f"finished stages lost:          {tally.lost}")
    print(f"stages computed twice:         {tally.twice}")
    print(f"runs ending with running rows: {tally.running_rows}")
    print(f"tracebacks printed:            {tally.tracebacks}")
    same = bool(tally.reports) and all(tally.reports)
    print(f"final reports identical to the undisturbed run: {'yes' if same else 'no'} "
          f"({sum(tally.reports)} of {len(tally.reports)})")
    for note in tally.notes:
        print(f"- {note}")
    bad = tally.lost or tally.twice or tally.running_rows or tally.tracebacks or not same
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
