"""The library surface, the one the CLI is a thin layer over: load a spec, plan it, run it, look at a run.

Tests and notebooks call these directly:
- a spec: `load(path, overrides)`, `check_files(spec, path)`, `plan(spec, only)`, `run(spec, ...)`;
- a run (its directory, or the spec that names it; default the newest under runs/): `status(run)`,
  `report(run, format, table)`, `details(run, benchmark)`, `plot(run, kind)`, `import_numbers(run, csv)`,
  `verify(run)`, `repair(run)`, `export(run, cell, out)`;
- an answer file: `score(benchmark, path, answers)` against a benchmark's official files.

This module is the top of the library's layers (core -> plug-ins -> orchestration -> this facade ->
the CLI); it only delegates. Heavy modules (Ray, torch, the plug-ins) are imported by the call that
needs them, so `matrix --help` stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from matrix.errors import Problem, SpecError
from matrix.rundir import SPEC_SNAPSHOT, find_run, open_run, snapshot_spec  # noqa: F401  (part of the API)
from matrix.spec import Spec
from matrix.specfile import load_spec
from matrix.yamlmap import LineMap, format_path

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
            from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError

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
    from matrix.registry import METHODS

    return any(METHODS.get(m.plugin).answers_questions(m.params) and bench_id not in
               METHODS.get(m.plugin).answer_files(m.params) for m in spec.methods)


def _lines(spec_path: str | Path) -> tuple[dict, LineMap]:
    from matrix.specfile import _load_with_extends

    return _load_with_extends(Path(spec_path))


def plan(spec: Spec, only: str | None = None):
    """The cells `only` selects (`method=nsft,dataset=ocrvqa`) and their stage graph: a `matrix.runner.plan.Planned`."""
    from matrix.runner.plan import plan as plan_spec

    return plan_spec(spec, only)


def settings(spec: Spec) -> list[dict]:
    """Per method row, before anything runs: its plug-in, objective, and every effective training setting
    (rows that train) and generation setting (rows that generate), each `{"value", "source"}` with the
    source one of `matrix.spec`'s LIBRARY, PAPER, SPEC, FORCED, ROW."""
    from matrix.settings import resolved_generation, resolved_training
    from matrix.methods.base import METHODS

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
    from matrix.settings import PAPER, ROW, _leaves

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


def planned_rows(spec: Spec, only: str | None = None) -> tuple[Any, list[dict]]:
    """(plan, one row per stage with its status in the run's store: cached, to run or failed); a run not
    started yet has every stage to run."""
    from matrix.store import Store

    planned = plan(spec, only)
    records: dict = {}
    if (spec.run_dir / "matrix.db").exists():
        store = Store(spec.run_dir)
        try:
            records = store.stages()
        finally:
            store.close()
    return planned, planned.stage_rows(records)


def by_kind(rows: list[dict]) -> list[tuple[str, int, int, int, int]]:
    """Stage rows counted per kind in pipeline order: (kind, stages, cached/done, to run, failed)."""
    from matrix.runner.plan import by_kind as count

    return count(rows)


def run(spec: Spec, only: str | None = None, fail_fast: bool = False, rerun: list[str] | None = None,
        address: str | None = None, on_event: Callable | None = None, on_start: Callable | None = None,
        on_note: Callable[[str], None] | None = None):
    """Run every stage of the (selected) grid that is not already done; returns a `RunSummary`
    (`matrix.runner.sweep.run`). `on_note` gets lines about setup done before the first stage."""
    from matrix.runner.sweep import run as run_sweep

    return run_sweep(spec, only=only, fail_fast=fail_fast, rerun=rerun, address=address, on_event=on_event,
                     on_start=on_start, on_note=on_note)


def progress_display():
    """Progress bars (a terminal) or timestamped lines (a log) for `run`'s `on_start` / `on_event` / `on_note`."""
    from matrix.runner.progress import SweepProgress

    return SweepProgress()


def tracker(spec: Spec, uri: str | None = None, warn: Callable[[str], None] | None = None):
    """An MLflow tracker for `run`'s callbacks (`matrix.tracking.Tracker`), or None when tracking is off:
    no `uri` given and no `tracking:` section in the spec."""
    from matrix.tracking import Tracker, tracking_uri

    resolved = tracking_uri(spec, uri)
    return Tracker(spec, resolved, warn=warn) if resolved else None


@dataclass
class RunStatus:
    spec: Spec
    rows: list[dict]  # one per stage of the plan: kind, label, key, status, why, runtime, wall_s
    running: list[str]  # `running: LABEL [KEY] for 5m 03s: LAST LOG LINE` per stage running now

    def by_kind(self) -> list[tuple[str, int, int, int, int]]:
        return by_kind(self.rows)


def status(target: str | Path | None = None) -> RunStatus:
    """Per-stage status of a run against its spec snapshot, and what its running stages last logged."""
    from matrix.runner.sweep import running_lines

    spec, store = open_run(target)
    try:
        return RunStatus(spec, plan(spec).stage_rows(store.stages()), running_lines(store))
    finally:
        store.close()


def report(target: str | Path | None = None, fmt: str = "markdown", table: str | None = None,
           cost: bool = False, significance: bool = False) -> str:
    """A table the spec declares, rendered from the run's stored metrics (`matrix.report`)."""
    from matrix.report import render

    spec, store = open_run(target)
    try:
        return render(spec, store, fmt, table, cost=cost, significance=significance)
    finally:
        store.close()


def details(target: str | Path | None, benchmark: str):
    """Every cell's per-sample answers and scores on `benchmark` (a DataFrame; `matrix.results.details`)."""
    from matrix.results import details as sample_rows

    spec, store = open_run(target)
    try:
        return sample_rows(spec, store, benchmark)
    finally:
        store.close()


def render_score(result, fmt: str = "table") -> str:
    """A `score(...)` result as a table, JSON or CSV."""
    from matrix.scoring import render

    return render(result, fmt)


def verify(target: str | Path | None = None) -> tuple[int, list, int]:
    """Every finished stage's artifact against its manifest: (checked, damaged, without a manifest)."""
    from matrix.manifest import check_store

    _, store = open_run(target)
    try:
        return check_store(store)
    finally:
        store.close()


def repair(target: str | Path, force: bool = False) -> tuple[Path, Any]:
    """Rebuild a damaged run store from its artifacts: (run directory, `matrix.repair.Repaired`, or None
    when the store reads fine and `force` is off)."""
    from matrix.errors import DamagedStore
    from matrix.repair import repair as rebuild
    from matrix.store import Store

    spec, run_dir = find_run(target)
    if not force and (run_dir / "matrix.db").exists():
        try:
            Store(run_dir).close()
            return run_dir, None
        except DamagedStore:
            pass
    return run_dir, rebuild(spec, run_dir)


def import_numbers(target: str | Path, file: str | Path) -> tuple[Spec, int, list[str]]:
    """External numbers from a long-format CSV into a run's store, marked imported (a spec's run that has
    not started gets its run directory): (spec, numbers imported, notes on rows outside the spec)."""
    from matrix.importer import import_file, outside_spec

    spec, store = open_run(target, create=True)
    try:
        n = import_file(spec, store, Path(file))
    finally:
        store.close()
    return spec, n, outside_spec(spec, Path(file))


def plot(target: str | Path | None = None, kind: str = "scaling", output: str | Path | None = None,
         table: str | None = None) -> list[Path]:
    """Draw a run's figure (`scaling` or `cost`); returns the files written."""
    from matrix.plot import plot_run

    spec, store = open_run(target)
    try:
        return plot_run(spec, store, kind, Path(output) if output is not None else None, table)
    finally:
        store.close()


def export(target: str | Path, cell: str, out: str | Path, adapter: bool = False, seed: int | None = None) -> Path:
    """A cell's trained model as a standalone llava-hf checkpoint (or its PEFT adapter); returns the folder."""
    from matrix.export import export as export_cell

    return export_cell(target, cell, out, adapter=adapter, seed=seed)
