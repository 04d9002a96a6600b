"""`matrix repair RUN`: rebuild a damaged run store from the artifacts, recomputing nothing.

Every finished stage's artifact folder holds its `result.json` (the stage's result, timings, host and the
manifest of its files), which is everything the store records about a done stage. Repair:

1. takes the run lock (no `matrix run` may drive the directory meanwhile);
2. moves `matrix.db` (and its `-wal` / `-shm` files) aside as `matrix.db.damaged-<UTC time>`: kept, never
   deleted;
3. salvages what only the database held, as far as the damaged file still reads: the imported numbers
   (`matrix import`) and the history of runs;
4. records every stage of the run's plan (its `spec.yaml` snapshot) whose artifact is intact (see
   `matrix.manifest`) as done, with its metrics, exactly as `matrix run` records a finished stage.

Not recovered: failed stages (they have no artifact; the next `matrix run` tries them again) and
artifacts of stages the current plan no longer has (left on disk as they are; a `matrix run` whose plan
has them again adopts them). Damaged artifacts are left for `matrix run`, which computes them again.
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from matrix.spec import Spec
from matrix.store import Store

SIDE_FILES = ("", "-wal", "-shm")


@dataclass
class Repaired:
    kept_as: Path | None  # where the damaged database now is (None: there was none)
    recorded: list[str] = field(default_factory=list)  # labels of stages recorded done from their artifacts
    damaged: list[str] = field(default_factory=list)  # '<label>: <problem>' of artifacts not used
    missing: int = 0  # stages of the plan with no artifact (never finished, or failed)
    imported: int | None = 0  # imported numbers salvaged (None: the damaged file would not give them)
    runs: int | None = 0  # rows of the runs history salvaged (None: likewise)


def repair(spec: Spec, run_dir: Path) -> Repaired:
    from matrix.lock import RunLock
    from matrix.manifest import problems, read_result
    from matrix.runner.executor import Executor
    from matrix.runner.plan import plan

    run_dir = Path(run_dir)
    planned = plan(spec)
    with RunLock(run_dir):
        kept = _set_aside(run_dir / "matrix.db")
        store = Store(run_dir)
        try:
            out = Repaired(kept)
            if kept is not None:
                out.imported, out.runs = _salvage(kept, store)
            recorder = Executor(store, planned.graph, spec.resources, [])
            for stage in planned.graph.ordered():
                folder = store.artifact_dir(stage.key, stage.kind)
                if not folder.exists():
                    out.missing += 1
                    continue
                found = problems(folder)
                if found:
                    out.damaged.append(f"{stage.label}: {'; '.join(found)}")
                    continue
                payload, _ = read_result(folder)
                recorder._record(stage, payload)  # the executor's own way of recording a finished stage
                out.recorded.append(stage.label)
            return out
        finally:
            store.close()


def _set_aside(db: Path) -> Path | None:
    if not db.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    kept = db.with_name(f"{db.name}.damaged-{stamp}")
    n = 1
    while kept.exists():
        n += 1
        kept = db.with_name(f"{db.name}.damaged-{stamp}-{n}")
    for suffix in SIDE_FILES:  # the WAL belongs to the file it was written for: keep them together
        part = Path(f"{db}{suffix}")
        if part.exists():
            os.rename(part, f"{kept}{suffix}")
    return kept


def _salvage(kept: Path, store: Store) -> tuple[int | None, int | None]:
    """Imported numbers and run history read from the damaged file, as far as it reads (read-only)."""
    try:
        con = sqlite3.connect(f"file:{kept}?mode=ro", uri=True)
    except sqlite3.DatabaseError:
        return None, None
    try:
        imported = _rows(con, "SELECT base_model, dataset, scale, method, seed, benchmark, metric, value, source, "
                              "line, imported_at FROM imported")
        runs = _rows(con, "SELECT id, started, finished, status, command, spec_sha, provenance FROM runs")
    finally:
        con.close()
    with store._tx() as db:
        if imported:
            db.executemany("INSERT OR REPLACE INTO imported (base_model, dataset, scale, method, seed, benchmark, "
                           "metric, value, source, line, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           imported)
        if runs:
            db.executemany("INSERT OR REPLACE INTO runs (id, started, finished, status, command, spec_sha, "
                           "provenance) VALUES (?, ?, ?, ?, ?, ?, ?)", runs)
    return (len(imported) if imported is not None else None), (len(runs) if runs is not None else None)


def _rows(con: sqlite3.Connection, sql: str) -> list[tuple] | None:
    try:
        return con.execute(sql).fetchall()
    except sqlite3.DatabaseError:
        return None
