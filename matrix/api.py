"""The library surface the CLI is a thin layer over: load a spec, plan it, run it, look at a run.

Tests and notebooks call these directly: `plan(...)`, `run(...)`, `status(...)`, `report(...)`.
"""
from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from matrix.errors import Problem, SpecError, UserError
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
            status = {"done": "cached", "running": "to run"}.get(status, status)
            why = rec.error_line if rec and rec.status == "failed" else ("" if rec else "not computed yet")
            runtime = (rec.result or {}).get("runtime") if rec and rec.status == "done" else None
            rows.append({"kind": stage.kind, "label": stage.label, "key": stage.short, "status": status, "why": why,
                         "runtime": runtime, "wall_s": rec.wall_s if rec else None})
        return rows


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
                BENCHMARKS.get(b.plugin)().load(Path(b.path).expanduser(), limit=1)
            except (BenchmarkFileError, FileNotFoundError) as e:
                add(("benchmarks", i, "path"), str(e))
    if problems:
        raise SpecError(problems=problems)


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


def open_run(target: str | Path | None) -> tuple[Spec, Store]:
    """A run from its directory, or from the spec that names it; default: the newest run under runs/."""
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
            run_dir = load_spec(target).run_dir
        else:
            raise UserError(f"{target}: no such run directory or spec file")
    snapshot = run_dir / SPEC_SNAPSHOT
    if not snapshot.exists():
        raise UserError(f"{run_dir}: not a run directory (no {SPEC_SNAPSHOT}); has `matrix run` been started on it?")
    return load_spec(snapshot), Store(run_dir)


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
        address: str | None = None, on_event: Callable | None = None, on_start: Callable | None = None):
    """Run every stage of the (selected) grid that is not already done; returns a RunSummary."""
    from matrix.lock import RunLock
    from runner.cluster import connect, kill_orphans, node_capacities
    from runner.executor import Executor

    planned = plan(spec, only)
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir) as lock:
        if lock.previous and lock.previous.get("ray_pids"):
            kill_orphans(lock.previous["ray_pids"])
        store = Store(run_dir)
        try:
            store.clear_tmp()
            store.forget_running()
            if rerun:
                _reset_for_rerun(store, planned, rerun)
            text, sha = snapshot_spec(spec)
            (run_dir / SPEC_SNAPSHOT).write_text(text)
            records = store.stages()
            if all(records.get(s.key) and records[s.key].status == "done" for s in planned.graph.stages.values()):
                from runner.executor import RunSummary

                return RunSummary(cached=[s.label for s in planned.graph.stages.values()])
            run_id = store.start_run(" ".join(sys.argv), sha, provenance(sha))
            conn = connect(address or spec.ray.address, spec.ray.num_cpus, spec.ray.num_gpus)
            lock.note(ray_pids=conn.pids)
            try:
                executor = Executor(store, planned.graph, spec.resources, node_capacities(), fail_fast, on_event)
                if on_start:
                    on_start(planned, store)
                summary = executor.run()
            finally:
                conn.shutdown()
                lock.note(ray_pids=[])
            store.finish_run(run_id, "ok" if summary.ok else ("interrupted" if summary.interrupted else "failed"))
            return summary
        finally:
            store.close()


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
