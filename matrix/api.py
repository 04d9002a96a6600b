"""The library surface the CLI is a thin layer over: load a spec, plan it, run it, look at a run.

Tests and notebooks call these directly: `plan(...)`, `run(...)`, `status(...)`, `report(...)`,
`score(...)` (an existing answer file against a benchmark's official files; `matrix.scoring`).
"""
from __future__ import annotations

import hashlib
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from matrix.errors import Problem, RunError, SpecError, UserError
from matrix.grid import Cell, expand, parse_only, select
from matrix.spec import Spec
from matrix.specfile import load_spec
from matrix.store import StageRecord, Store
from matrix.yamlmap import LineMap, format_path

SPEC_SNAPSHOT = "spec.yaml"


@dataclass
class Planned:
    spec: Spec
    cells: list[Cell]
    graph: "object"  # runner.graph.StageGraph

    def stage_rows(self, records: dict[str, StageRecord]) -> list[dict]:
        rows = []
        for stage in self.graph.ordered():
            rec = records.get(stage.key)
            status = rec.status if rec else "to run"
            status = {"done": "cached", "running": "to run", "interrupted": "to run"}.get(status, status)
            why = rec.error_line if rec and rec.status == "failed" else ("" if rec else "not computed yet")
            runtime = (rec.result or {}).get("runtime") if rec and rec.status == "done" else None
            rows.append({"kind": stage.kind, "label": stage.label, "key": stage.short, "status": status, "why": why,
                         "runtime": runtime, "wall_s": rec.wall_s if rec else None})
        return rows


def score(benchmark: str, path: str | Path, answers: str | Path, **kwargs):
    """Score an answer file (LLaVA's or a run's answers.jsonl) on a benchmark's official files, reading no
    image; returns a `matrix.scoring.ScoreResult`. Keywords: judge, template, replies, limit."""
    from matrix.scoring import score as score_file

    return score_file(benchmark, path, answers, **kwargs)


def load(spec_path: str | Path, overrides: list[str] | None = None) -> Spec:
    return load_spec(spec_path, overrides)


def check_files(spec: Spec, spec_path: str | Path) -> None:
    """Every local file the spec points at exists; problems name the spec line and the missing path."""
    from matrix.models.family import FAMILIES

    _, lines = _lines(spec_path)
    problems: list[Problem] = []

    def add(path: tuple, msg: str) -> None:
        file, line = lines.locate(path)
        problems.append(Problem(file, line, format_path(path), msg))

    for name, entry in spec.base_models.items():
        for msg in FAMILIES.get(entry.family)().missing_files(entry):
            add(("base_models", name, "path"), msg)
    for name, ds in spec.datasets.items():
        if ds.source == "llava-json":
            if not Path(ds.path).expanduser().exists():
                add(("datasets", name, "path"), f"{ds.path} not found: expected a LLaVA JSON conversation file")
            if not Path(ds.image_root).expanduser().is_dir():
                add(("datasets", name, "image_root"), f"{ds.image_root} not found: expected the image folder")
    for i, b in enumerate(spec.benchmarks):
        if b.template is not None and not Path(b.template).expanduser().is_file():
            add(("benchmarks", i, "template"), f"{b.template} not found: expected a grading-template file")
        if b.path is not None:
            from benchmarks.base import BENCHMARKS, BenchmarkFileError

            try:
                if not BENCHMARKS.get(b.plugin)().load(Path(b.path).expanduser(), limit=1,
                                                        images=_answered(spec, b.id)):
                    add(("benchmarks", i, "path"), f"{b.path}: the {b.plugin} files under it hold no questions")
            except (BenchmarkFileError, FileNotFoundError) as e:
                add(("benchmarks", i, "path"), str(e))
    if problems:
        raise SpecError(problems=problems)


def _answered(spec: Spec, bench_id: str) -> bool:
    """Whether some row answers the benchmark's questions (so its images must be there); a benchmark
    only external rows' answer files cover is scored without images."""
    from methods.external import answer_file, has_model

    return any(m.plugin != "external" or (has_model(m.params) and answer_file(m.params, bench_id) is None)
               for m in spec.methods)


def _lines(spec_path: str | Path) -> tuple[dict, LineMap]:
    from matrix.specfile import _load_with_extends

    return _load_with_extends(Path(spec_path))


def plan(spec: Spec, only: str | None = None) -> Planned:
    from runner.graph import build

    all_cells = expand(spec)
    cells = select(all_cells, parse_only(only))
    if not cells:
        raise UserError(f"--only {only!r} selects no cell of the grid")
    return Planned(spec, cells, build(spec, cells, all_cells))


def settings(spec: Spec) -> list[dict]:
    """Per method row, before anything runs: its plug-in, objective, and every effective training setting
    (rows that train) and generation setting (rows that generate), each `{"value", "source"}` with the
    source one of `matrix.spec`'s LIBRARY, PAPER, SPEC, FORCED, ROW."""
    from matrix.spec import resolved_generation, resolved_training
    from methods.base import METHODS

    rows = []
    for row in spec.method_ids():
        entry = spec.method(row)
        method = METHODS.get(entry.plugin)
        out: dict = {"method": row, "plugin": entry.plugin, "objective": method.objective}
        if method.objective != "none":
            out["training"] = resolved_training(spec, row)[1]
        if method.responses:
            out["generation"] = {"modes": list(method.responses), **resolved_generation(spec, row)[1],
                                 **_mode_settings(spec, entry, method)}
        rows.append(out)
    return rows


def _mode_settings(spec: Spec, entry, method) -> dict:
    """A method's settings of its own generate modes (SeVa's augmentation and noise step, CSR's search),
    `<mode>.<key>`, or `<mode>.<key>@<base model>` where they differ between base models (SeVa's step)."""
    from matrix.spec import PAPER, ROW, _leaves

    plugin = method()
    out: dict = {}
    for mode in method.responses:
        per_model = {bm: _leaves(plugin.generation_params(mode, entry.params, bm)) for bm in spec.base_models}
        keys = sorted({k for leaves in per_model.values() for k in leaves})
        for key in keys:
            values = {bm: leaves.get(key) for bm, leaves in per_model.items()}
            source = ROW if key[0] in entry.params else PAPER
            name = ".".join((mode, *key))
            if len({repr(v) for v in values.values()}) == 1:
                out[name] = {"value": next(iter(values.values())), "source": source}
            else:
                out.update({f"{name}@{bm}": {"value": v, "source": source} for bm, v in values.items()})
    return out


def open_run(target: str | Path | None, create: bool = False) -> tuple[Spec, Store]:
    """A run from its directory, or from the spec that names it; default: the newest run under runs/.
    `create`: a spec whose run has not started yet gets its run directory (snapshot and empty store) now,
    as `matrix import` needs before anything runs."""
    spec, run_dir = find_run(target, create)
    return spec, Store(run_dir)


def find_run(target: str | Path | None, create: bool = False) -> tuple[Spec, Path]:
    """The spec snapshot and directory of a run (as `open_run`), without opening its store."""
    if target is None:
        candidates = sorted(Path("runs").glob(f"*/{SPEC_SNAPSHOT}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UserError("no run found under runs/; give a run directory or a spec file")
        run_dir = candidates[-1].parent
    else:
        target = Path(target)
        if target.is_dir():
            run_dir = target
        elif target.is_file():
            spec = load_spec(target)
            run_dir = spec.run_dir
            if create and not (run_dir / SPEC_SNAPSHOT).exists():
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / SPEC_SNAPSHOT).write_text(snapshot_spec(spec)[0])  # `matrix run` rewrites it
        else:
            raise UserError(f"{target}: no such run directory or spec file")
    snapshot = run_dir / SPEC_SNAPSHOT
    if not snapshot.exists():
        raise UserError(f"{run_dir}: not a run directory (no {SPEC_SNAPSHOT}); has `matrix run` been started on it?")
    return load_spec(snapshot), run_dir


def running_lines(store: Store, now: float | None = None) -> list[str]:
    """`running: LABEL [KEY] for 5m 03s: LAST LOG LINE` per stage the store has as running (the time
    counts from its submission; a stage still waiting for resources has written no log yet)."""
    import time

    from runner.deadline import format_duration
    from runner.executor import stage_log

    now = time.time() if now is None else now
    lines = []
    for rec in sorted(store.stages().values(), key=lambda r: r.started or 0):
        if rec.status != "running":
            continue
        log = stage_log(store.tmp, rec.key)
        last = _last_line(log) if log else "(no log yet: waiting for a worker)"
        lines.append(f"running: {rec.label} [{rec.key[:12]}] for {format_duration(max(0.0, now - (rec.started or now)))}"
                     f": {last or '(nothing logged yet)'}")
    return lines


def _last_line(path: Path, tail_bytes: int = 8192, width: int = 200) -> str:
    """The last non-blank line of a log (progress bars redraw with carriage returns: their last state)."""
    import re

    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - tail_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    return lines[-1][:width] if lines else ""


def provenance(spec_sha: str) -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                                  cwd=Path(__file__).parent).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("torch", "transformers", "peft", "deepspeed", "ray", "openai", "pydantic"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "git_sha": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "packages": packages,
        "spec_sha": spec_sha,
        "argv": sys.argv,
    }


def snapshot_spec(spec: Spec) -> tuple[str, str]:
    text = yaml.safe_dump(spec.model_dump(mode="json", exclude_unset=True, by_alias=True), sort_keys=False)
    return text, hashlib.sha256(text.encode()).hexdigest()[:16]


def run(spec: Spec, only: str | None = None, fail_fast: bool = False, rerun: list[str] | None = None,
        address: str | None = None, on_event: Callable | None = None, on_start: Callable | None = None,
        on_note: Callable[[str], None] | None = None):
    """Run every stage of the (selected) grid that is not already done; returns a RunSummary.
    `on_note` gets lines about setup done before the first stage (DeepSpeed's op build)."""
    from matrix.lock import RunLock
    from runner.cluster import connect, kill_orphans, node_capacities
    from runner.executor import Executor, RunSummary
    from runner.interrupt import StopRequests

    planned = plan(spec, only)
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    # Stop signals (Ctrl-C, SIGTERM, SIGHUP) are recorded from here on and acted on by the executor
    # between two steps; before it starts, they end the run before any stage is submitted.
    with StopRequests() as stops, RunLock(run_dir) as lock:
        if lock.previous and lock.previous.get("ray_pids"):
            kill_orphans(lock.previous["ray_pids"])
        store = Store(run_dir)
        try:
            store.clear_tmp()
            store.forget_running()
            store.close_stale_runs()
            if rerun:
                _reset_for_rerun(store, planned, rerun)
            _drop_damaged(store, planned, on_event or (lambda event, stage, detail: None))
            text, sha = snapshot_spec(spec)
            (run_dir / SPEC_SNAPSHOT).write_text(text)
            records = store.stages()
            if all(records.get(s.key) and records[s.key].status == "done" for s in planned.graph.stages.values()):
                return RunSummary(cached=[s.label for s in planned.graph.stages.values()])
            run_id = store.start_run(" ".join(sys.argv), sha, provenance(sha))
            summary = RunSummary()
            conn = None
            if not stops.requested:
                try:
                    conn = connect(address or spec.ray.address, spec.ray.num_cpus, spec.ray.num_gpus)
                except RunError:
                    store.finish_run(run_id, "failed")
                    raise
                except SystemExit as e:  # Ray's own SIGTERM handler, active while Ray starts: sys.exit(15)
                    if e.code != signal.SIGTERM:
                        raise
                    _shutdown_ray()
                    stops.signum = signal.SIGTERM
                    conn = None
                stops.install()  # again: Ray's start-up replaced the SIGTERM handler with its own
            if conn is not None:
                lock.note(ray_pids=conn.pids)
                try:
                    from runner.shared import write_token

                    executor = Executor(store, planned.graph, spec.resources, node_capacities(), fail_fast, on_event,
                                        run_token=write_token(run_dir))  # stages check they see it
                    if on_start:
                        on_start(planned, store)
                    if not stops.requested:
                        _prebuild_ops(planned, records, on_note or (lambda line: None), lambda: stops.requested)
                    summary = executor.run(stops)
                finally:
                    # Ends the workers of stages still running (embedded Ray stops; a cluster ends this
                    # driver's job and, with it, its tasks).
                    conn.shutdown()
                    lock.note(ray_pids=[])
                if conn.embedded and summary.interrupted:
                    store.clear_tmp()  # the embedded workers are gone: their half-written folders can go too
            if stops.requested:
                summary.interrupted, summary.signal = True, stops.signum
            status = "ok" if summary.ok else ("interrupted" if summary.interrupted else "failed")
            try:
                store.finish_run(run_id, status)
            except (sqlite3.Error, OSError):
                if not summary.store_error:
                    raise
            return summary
        finally:
            store.close()


def _shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _prebuild_ops(planned: Planned, records: dict[str, StageRecord], say: Callable[[str], None],
                  stop: Callable[[], bool] = lambda: False) -> None:
    """DeepSpeed's op, built before any stage starts when a train stage to run needs it (methods.ops)."""
    from methods.ops import needs_op, prebuild

    todo = [s for s in planned.graph.stages.values() if not (records.get(s.key) and records[s.key].status == "done")]
    if needs_op(todo):
        prebuild(say, stop=stop)


def _drop_damaged(store: Store, planned: Planned, on_event: Callable) -> list[str]:
    """A stored artifact that no longer matches its manifest (a file deleted, truncated or changed) is not
    done: forget it, remove the folder and let this run compute it again; never read it. Returns the
    labels of the stages dropped, each also announced as a `damaged` event naming what is wrong."""
    from matrix.manifest import problems

    records = store.stages()
    dropped = []
    for stage in planned.graph.ordered():
        rec = records.get(stage.key)
        folder = store.artifact_dir(stage.key, stage.kind)
        if not (rec and rec.status == "done") and not folder.exists():
            continue
        found = problems(folder)
        if not found:
            continue
        on_event("damaged", stage, f"{folder}: {'; '.join(found[:3])}"
                                   f"{f' (and {len(found) - 3} more)' if len(found) > 3 else ''}; computing it again")
        store.reset([stage.key])
        store.remove_artifact(stage.key, stage.kind)
        dropped.append(stage.label)
    return dropped


def _reset_for_rerun(store: Store, planned: Planned, rerun: list[str]) -> None:
    """Forget the chosen stages and everything downstream of them, artifacts included."""
    records = store.stages()
    chosen: set[str] = set()
    for stage in planned.graph.ordered():  # upstream first, so downstream sees its deps' verdict
        rec = records.get(stage.key)
        picked = rec is not None and (("failed" in rerun and rec.status == "failed") or stage.kind in rerun)
        if picked or any(d.key in chosen for d in stage.deps.values()):
            chosen.add(stage.key)
    stages = [s for s in planned.graph.stages.values() if s.key in chosen]
    store.reset([s.key for s in stages])
    for s in stages:
        store.remove_artifact(s.key, s.kind)
