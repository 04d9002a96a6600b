"""A stage: one unit of scheduling, caching and resume, identified by the hash of what it computes.

A stage's key hashes its kind, the kind's VERSION, its normalised parameters and the keys of the
stages it depends on (never names or paths of upstream artifacts), so equal work is one stage and a
changed input re-runs exactly what lies downstream of it.

Each kind declares its parameters as a typed model (`StageKind.Params`) and which of them stay out of
the key (`SKIP_KEY_FIELDS`, Tango's SKIP_ID_ARGUMENTS): run-time settings such as the model's dtype,
the batch size or the judge's server change how a stage runs, never what it is, so they travel with
the stage without touching its key (or the keys downstream of it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from matrix.registry import KINDS  # noqa: F401  (stage kinds register into the core's registry)

Dtype = Literal["float32", "bfloat16", "float16"]


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


class StageParams(BaseModel):
    """Base of a kind's parameter model: strict (a parameter no field declares is a bug in the graph)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Stage:
    kind: str
    params: dict[str, Any]  # checked against the kind's Params when the stage is made
    deps: dict[str, "Stage"] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        KINDS.get(self.kind).parse(self.params)  # a graph bug fails at plan time, not in a worker

    @cached_property
    def key(self) -> str:
        kind = KINDS.get(self.kind)
        payload = {
            "kind": self.kind,
            "version": kind.VERSION,
            "params": kind.keyed(self.params),
            "deps": {name: dep.key for name, dep in sorted(self.deps.items())},
        }
        return hashlib.sha256(canonical(payload).encode()).hexdigest()

    @property
    def short(self) -> str:
        return self.key[:12]

    @property
    def loads_model(self) -> bool:
        """Whether the stage loads a model (and so is placed, and records `runtime`)."""
        return KINDS.get(self.kind).LOADS_MODEL and "model" in self.deps


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
    device: str = "cpu"  # where a model-loading stage puts its model (`matrix.runner.placement.device_for`)


class StageKind:
    """One kind of stage. Bump VERSION when the implementation changes what it computes: that
    invalidates every cached stage of the kind (and, through keys, everything downstream)."""

    VERSION: ClassVar[int] = 1
    #: Start each run in a fresh worker process (merge: a whole model in memory, given back when done).
    FRESH_PROCESS: ClassVar[bool] = False
    #: The parameter model (a Pydantic model or an annotated union of them).
    Params: ClassVar[Any] = StageParams
    #: Parameters left out of the key: how the stage runs, not what it computes.
    SKIP_KEY_FIELDS: ClassVar[frozenset[str]] = frozenset()
    #: Stages of this kind with a `model` input load it onto a device: a GPU they hold must be usable
    #: (`matrix.runner.placement`), and their result records `runtime` (device, dtype, batch size).
    LOADS_MODEL: ClassVar[bool] = False

    @classmethod
    def fresh_worker(cls, params: dict[str, Any], gpus: float) -> bool:
        """Whether this run needs a Ray worker process of its own. Any stage given a GPU may make a CUDA
        context there, and a process keeps the context it made under one stage's CUDA_VISIBLE_DEVICES
        (ray-project/ray#3245): reused, it would run the next stage on that GPU, which Ray may have given
        to another stage meanwhile, and keep the memory torch cached on it."""
        return cls.FRESH_PROCESS or gpus > 0

    @classmethod
    def parse(cls, params: dict[str, Any]):
        if "_adapter" not in cls.__dict__:
            cls._adapter = TypeAdapter(cls.Params)
        return cls._adapter.validate_python(params)

    @classmethod
    def keyed(cls, params: dict[str, Any]) -> dict[str, Any]:
        """What of `params` the key hashes: all but SKIP_KEY_FIELDS, exactly as given (so a field with a
        default that the graph leaves out keeps the key it had before the field existed)."""
        return {k: v for k, v in params.items() if k not in cls.SKIP_KEY_FIELDS}

    def execute(self, params: dict[str, Any], inputs: dict[str, StageInput], out: Path,
                ctx: StageContext) -> dict[str, Any]:
        """Check and type `params`, place the stage (a GPU it holds must work), then `run`."""
        typed = self.parse(params)
        if self.LOADS_MODEL and "model" in inputs:
            from matrix.runner.placement import device_for

            ctx.device = device_for(ctx)
        return self.run(typed, inputs, out, ctx)

    def run(self, params: Any, inputs: dict[str, StageInput], out: Path, ctx: StageContext) -> dict[str, Any]:
        """Compute into `out` (a private temporary folder) and return a small JSON-able result."""
        raise NotImplementedError
