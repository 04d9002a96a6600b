"""The benchmark plug-in contract: read official files, phrase prompts, score by the official rules.

Each benchmark is one file in this package, registered by name. It reads its files in LLaVA's
`playground/data/eval` layout (a spec points `benchmarks[].path` at that folder), can write a
synthetic version of them in the same layout, and scores answers into the numbers the papers print,
keeping a per-sample row for every answer so each number traces back to its answers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from matrix.registry import Registry

BENCHMARKS: Registry[type["Benchmark"]] = Registry("benchmark", "benchmarks")

SHORT_ANSWER_SUFFIX = "\nAnswer the question using a single word or phrase."


class BenchmarkFileError(Exception):
    """An official file is missing or malformed; the message names it and what belongs there."""


@dataclass
class Sample:
    question_id: str
    image: Path
    question: str  # exactly what the model is asked, official suffix included, without "<image>"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scored:
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]]


class Benchmark:
    id: ClassVar[str] = ""
    headline: ClassVar[str] = ""  # the metric the paper prints
    max_new_tokens: ClassVar[int] = 128  # LLaVA's model_vqa_loader default

    def synthesize(self, root: Path, size: int, seed: int) -> None:
        """Write a synthetic version (about `size` images) of the official files under `root`."""
        raise NotImplementedError

    def load(self, root: Path, limit: int | None = None) -> list[Sample]:
        raise NotImplementedError

    def score(self, samples: list[Sample], answers: list[str]) -> Scored:
        raise NotImplementedError


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise BenchmarkFileError(f"{path} not found: expected {what}")
    return path


def read_jsonl(path: Path, what: str) -> list[dict]:
    require(path, what)
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BenchmarkFileError(f"{path}:{n}: not a JSON line ({e.msg}); expected {what}") from None
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def ratio(num: float, den: float) -> float:
    return num / den if den else 0.0
