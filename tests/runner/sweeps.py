"""What the end-to-end sweep tests share: the CLI in a subprocess, and reading a run's store while (or
after) it runs."""
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def matrix(*args, check=True, **kw):
    proc = subprocess.run([sys.executable, "-m", "matrix", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=600, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"matrix {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _query(run_dir: Path, sql: str, args: tuple = ()) -> list[tuple] | None:
    """Rows of `sql` on the run's store; None while there is no store or it cannot be read yet."""
    db = run_dir / "matrix.db"
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return None


def done_stages(run_dir: Path) -> dict[str, float]:
    """key -> finish time of every done stage."""
    return dict(_query(run_dir, "SELECT key, finished FROM stages WHERE status='done'") or [])


def running(run_dir: Path, kind: str) -> bool:
    """Whether a stage of `kind` is running now."""
    return bool(_query(run_dir, "SELECT 1 FROM stages WHERE kind=? AND status='running'", (kind,)))


def done_records(run_dir: Path) -> dict[str, tuple[str, str, dict, dict]]:
    """label -> (key, kind, deps, result) of every done stage."""
    rows = _query(run_dir, "SELECT key, kind, label, deps, result FROM stages WHERE status='done'") or []
    return {label: (key, kind, json.loads(deps or "{}"), json.loads(res or "{}")) for key, kind, label, deps, res in rows}
