"""The run store: one SQLite database (WAL) per run directory plus content-addressed artifact folders.

Only the driver writes the database; each stage's worker writes its own artifact folder under a
temporary name and renames it into place when complete, so a crash leaves at most a temporary folder.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from matrix.errors import DamagedStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS stages (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    params TEXT NOT NULL,
    deps TEXT NOT NULL,
    status TEXT NOT NULL,            -- running | done | failed | interrupted (its driver stopped or died)
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    wall_s REAL,
    peak_mem_mb REAL,
    host TEXT,
    result TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    stage_key TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (stage_key, metric)
);
CREATE TABLE IF NOT EXISTS imported (   -- external numbers (`matrix import`), never mixed with computed ones
    base_model TEXT NOT NULL,
    dataset TEXT NOT NULL,             -- '' for none (the baseline)
    scale INTEGER NOT NULL,            -- 0 for none
    method TEXT NOT NULL,
    seed INTEGER NOT NULL,
    benchmark TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    source TEXT NOT NULL,              -- the imported file's name
    line INTEGER NOT NULL,             -- its line in that file
    imported_at REAL NOT NULL,
    PRIMARY KEY (base_model, dataset, scale, method, seed, benchmark, metric)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    command TEXT,
    spec_sha TEXT,
    provenance TEXT
);
"""


@dataclass
class StageRecord:
    key: str
    kind: str
    label: str
    status: str
    attempts: int
    wall_s: float | None
    peak_mem_mb: float | None
    result: dict[str, Any]
    error: str | None
    started: float | None
    finished: float | None

    @property
    def error_line(self) -> str:
        """The last line of the traceback: the exception and its message."""
        if not self.error:
            return ""
        lines = [ln for ln in self.error.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def _when_unlocked(step, limit_s: float = 30.0) -> None:
    """Run `step`, again while SQLite says the database is locked, for up to `limit_s`. Two connections
    opening a new store at once (`matrix status` while `matrix run` creates it) race for the whole file
    to switch it to WAL, and SQLite answers the loser "database is locked" at once, without its busy
    timeout (it does so where waiting could deadlock); the next try finds WAL already set."""
    deadline = time.monotonic() + limit_s
    while True:
        try:
            return step()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Store:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.artifacts = self.run_dir / "artifacts"
        self.tmp = self.artifacts / ".tmp"
        self.db_path = self.run_dir / "matrix.db"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        emptied = self.db_path.exists() and self.db_path.stat().st_size == 0 and _has_artifacts(self.artifacts)
        self.db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            if emptied:
                raise sqlite3.DatabaseError("the file is empty, but the run has finished artifacts")
            _when_unlocked(self._prepare)
        except sqlite3.OperationalError:  # locked, disk full...: not damage
            self.db.close()
            raise
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise DamagedStore(self.db_path, str(e)) from None

    def _prepare(self) -> None:
        """WAL mode (once per file: it persists), page check, schema (idempotent)."""
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        check = self.db.execute("PRAGMA quick_check").fetchone()[0]  # every page; the store is small
        if check != "ok":
            raise sqlite3.DatabaseError(check)
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # ---- artifacts ----------------------------------------------------------------------------
    def artifact_dir(self, key: str, kind: str) -> Path:
        return self.artifacts / kind / key[:16]

    def remove_artifact(self, key: str, kind: str) -> None:
        path = self.artifact_dir(key, kind)
        if path.exists():
            # Rename first so a half-deleted folder is never mistaken for a finished artifact.
            doomed = self.tmp / f"deleted-{key[:16]}"
            self.tmp.mkdir(parents=True, exist_ok=True)
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def clear_tmp(self) -> int:
        """Remove temporary folders left by workers that died; call only while holding the run lock."""
        if not self.tmp.exists():
            return 0
        n = 0
        for p in self.tmp.iterdir():
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        return n

    # ---- stages -------------------------------------------------------------------------------
    def _tx(self):
        return _Transaction(self.db)

    def stage(self, key: str) -> StageRecord | None:
        row = self.db.execute(
            "SELECT key, kind, label, status, attempts, wall_s, peak_mem_mb, result, error, started, finished "
            "FROM stages WHERE key=?",
            (key,),
        ).fetchone()
        return _record(row) if row else None

    def stages(self) -> dict[str, StageRecord]:
        rows = self.db.execute(
            "SELECT key, kind, label, status, attempts, wall_s, peak_mem_mb, result, error, started, finished FROM stages"
        ).fetchall()
        return {r[0]: _record(r) for r in rows}

    def mark_running(self, key: str, kind: str, label: str, params: dict, deps: dict[str, str], host: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO stages (key, kind, label, params, deps, status, attempts, started, host) "
                "VALUES (?, ?, ?, ?, ?, 'running', 1, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET status='running', attempts=attempts+1, started=excluded.started, "
                "label=excluded.label, host=excluded.host, error=NULL",
                (key, kind, label, json.dumps(params, sort_keys=True, default=str), json.dumps(deps), time.time(), host),
            )

    def ensure(self, key: str, kind: str, label: str, params: dict, deps: dict[str, str], attempts: int) -> None:
        """A row for the stage if it has none (a stage adopted from its artifact, or refused before it
        started), with `attempts` starts; an existing row is left as it is."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO stages (key, kind, label, params, deps, status, attempts) VALUES (?, ?, ?, ?, ?, "
                "'interrupted', ?) ON CONFLICT(key) DO NOTHING",
                (key, kind, label, json.dumps(params, sort_keys=True, default=str), json.dumps(deps), attempts),
            )

    def mark_done(self, key: str, result: dict[str, Any], wall_s: float | None, peak_mem_mb: float | None,
                  metrics: dict[str, float] | None = None, benchmark: str | None = None,
                  host: str | None = None) -> None:
        """Record a finished stage and its metrics in one transaction."""
        with self._tx() as db:
            db.execute(
                "UPDATE stages SET status='done', finished=?, wall_s=?, peak_mem_mb=?, result=?, error=NULL, "
                "host=COALESCE(?, host) WHERE key=?",
                (time.time(), wall_s, peak_mem_mb, json.dumps(result, default=str), host, key),
            )
            if metrics:
                db.execute("DELETE FROM metrics WHERE stage_key=?", (key,))
                db.executemany(
                    "INSERT INTO metrics (stage_key, benchmark, metric, value) VALUES (?, ?, ?, ?)",
                    [(key, benchmark or "", m, float(v)) for m, v in metrics.items()],
                )

    def mark_failed(self, key: str, error: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE stages SET status='failed', finished=?, error=? WHERE key=?", (time.time(), error, key))

    def forget_running(self) -> int:
        """Stages left 'running' by a driver that stopped or died are not done: mark them `interrupted` (to
        run again), keeping their count of attempts. Call only while holding the run lock."""
        with self._tx() as db:
            return db.execute("UPDATE stages SET status='interrupted', finished=? WHERE status='running'",
                              (time.time(),)).rowcount

    def reset(self, keys: list[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM stages WHERE key=?", [(k,) for k in keys])
            db.executemany("DELETE FROM metrics WHERE stage_key=?", [(k,) for k in keys])

    def metrics(self, keys: list[str] | None = None) -> Iterator[tuple[str, str, str, float]]:
        rows = self.db.execute("SELECT stage_key, benchmark, metric, value FROM metrics").fetchall()
        wanted = set(keys) if keys is not None else None
        for row in rows:
            if wanted is None or row[0] in wanted:
                yield row

    # ---- imported numbers ---------------------------------------------------------------------
    def add_imported(self, rows: list[dict[str, Any]], source: str) -> int:
        """Store external numbers in one transaction (all or nothing); a row for the same cell, seed,
        benchmark and metric replaces the earlier import. Rows: base_model, dataset, scale, method, seed,
        benchmark, metric, value, line (dataset / scale / seed may be None)."""
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO imported (base_model, dataset, scale, method, seed, benchmark, metric, value, "
                "source, line, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r["base_model"], r.get("dataset") or "", int(r.get("scale") or 0), r["method"],
                  int(r.get("seed") or 0), r["benchmark"], r["metric"], float(r["value"]), source,
                  int(r.get("line") or 0), now) for r in rows],
            )
        return len(rows)

    def imported(self) -> list[dict[str, Any]]:
        """Imported numbers, with None for no dataset / scale."""
        cols = ("base_model", "dataset", "scale", "method", "seed", "benchmark", "metric", "value", "source", "line")
        rows = self.db.execute(f"SELECT {', '.join(cols)} FROM imported ORDER BY source, line").fetchall()
        out = []
        for r in rows:
            d = dict(zip(cols, r))
            d["dataset"] = d["dataset"] or None
            d["scale"] = d["scale"] or None
            out.append(d)
        return out

    # ---- runs ---------------------------------------------------------------------------------
    def start_run(self, command: str, spec_sha: str, provenance: dict[str, Any]) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (started, status, command, spec_sha, provenance) VALUES (?, 'running', ?, ?, ?)",
                (time.time(), command, spec_sha, json.dumps(provenance)),
            )
            return int(cur.lastrowid)

    def close_stale_runs(self) -> int:
        """Runs still marked `running` belong to drivers that died (the caller holds the run lock): `killed`."""
        with self._tx() as db:
            return db.execute("UPDATE runs SET status='killed' WHERE status='running'").rowcount

    def finish_run(self, run_id: int, status: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET finished=?, status=? WHERE id=?", (time.time(), status, run_id))

    def runs(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, started, finished, status, command, spec_sha FROM runs ORDER BY id").fetchall()
        return [dict(zip(("id", "started", "finished", "status", "command", "spec_sha"), r)) for r in rows]


def _has_artifacts(artifacts: Path) -> bool:
    return artifacts.is_dir() and any(p.name != ".tmp" for p in artifacts.iterdir())


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _record(row) -> StageRecord:
    key, kind, label, status, attempts, wall_s, peak, result, error, started, finished = row
    return StageRecord(key, kind, label, status, attempts, wall_s, peak, json.loads(result) if result else {},
                       error, started, finished)
