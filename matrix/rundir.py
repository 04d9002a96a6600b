"""A run directory: the spec snapshot `matrix run` writes into it and the store beside it.

Commands that look at a run (status, report, plot, import, export, repair) find it from a run directory
or from the spec that names it (`find_run`, `open_run`); the snapshot, not the spec file that may have
changed since, is the spec they read the run against.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from matrix.errors import UserError
from matrix.spec import Spec
from matrix.specfile import load_spec
from matrix.store import Store

SPEC_SNAPSHOT = "spec.yaml"


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


def snapshot_spec(spec: Spec) -> tuple[str, str]:
    text = yaml.safe_dump(spec.model_dump(mode="json", exclude_unset=True, by_alias=True), sort_keys=False)
    return text, hashlib.sha256(text.encode()).hexdigest()[:16]
