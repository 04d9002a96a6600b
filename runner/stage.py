"""A stage: one unit of scheduling, caching and resume, identified by the hash of what it computes.

A stage's key hashes its kind, the kind's VERSION, its normalised parameters and the keys of the
stages it depends on (never names or paths of upstream artifacts), so equal work is one stage and a
changed input re-runs exactly what lies downstream of it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matrix.registry import Registry

KINDS: Registry["StageKind"] = Registry("stage kind", "runner.kinds")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class Stage:
    kind: str
    params: dict[str, Any]
    deps: dict[str, "Stage"] = field(default_factory=dict)
    label: str = ""

    @property
    def key(self) -> str:
        if not hasattr(self, "_key"):
            version = KINDS.get(self.kind).VERSION
            payload = {
                "kind": self.kind,
                "version": version,
                "params": self.params,
                "deps": {name: dep.key for name, dep in sorted(self.deps.items())},
            }
            self._key = hashlib.sha256(canonical(payload).encode()).hexdigest()
        return self._key

    @property
    def short(self) -> str:
        return self.key[:12]


@dataclass
class StageInput:
    """What a running stage sees of one upstream stage: its artifact folder and its recorded result."""

    dir: Path
    result: dict[str, Any]


@dataclass
class StageContext:
    run_dir: Path
    num_cpus: float
    num_gpus: float
    key: str
    label: str
    runtime: dict[str, Any] = field(default_factory=dict)  # settings outside keys (judge server, ...)


class StageKind:
    """One kind of stage. Bump VERSION when the implementation changes what it computes: that
    invalidates every cached stage of the kind (and, through keys, everything downstream)."""

    VERSION: int = 1
    #: Start each run in a fresh worker process (training holds process-wide state: process groups, threads).
    FRESH_PROCESS: bool = False

    def run(self, params: dict[str, Any], inputs: dict[str, StageInput], out: Path, ctx: StageContext) -> dict[str, Any]:
        """Compute into `out` (a private temporary folder) and return a small JSON-able result."""
        raise NotImplementedError
