"""The benchmark plug-in contract: read official files, phrase prompts, score by the official rules.

Each benchmark is one file in this package, registered by name with `@BENCHMARKS.register("id")`.
It is the official format and scorer only: it reads its files in LLaVA's `playground/data/eval` layout
(a spec's `benchmarks[].path` points at that eval folder) and scores answers into the numbers the papers
print, keeping one row per answer so every number traces back. A benchmark's synthetic twin (the same
files written from the shapes world) lives in `matrix/world/benchmarks/`, which imports this package's
file names; nothing here imports the world.

Use: `bench = BENCHMARKS.get("pope")(); samples = bench.load(root, limit)`, answer
`s.question` about `s.image` for each sample with `bench.max_new_tokens`, then
`bench.score(samples, answers)`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from matrix.registry import BENCHMARKS  # noqa: F401  (the core's registry; benchmarks register into it)


class BenchmarkFileError(Exception):
    """An official file is missing or malformed; the message names it and what belongs there."""


@dataclass
class Sample:
    question_id: str
    image: Path
    question: str  # exactly what the model is asked, official suffix included, without "<image>"
    meta: dict[str, Any] = field(default_factory=dict)  # ground truth and grouping (split, subtask...)
    official_id: Any = None  # the question file's id with its JSON type (int or str), when not a str

    @property
    def record_id(self) -> Any:
        """The id as LLaVA's answer files write it (POPE's 1, not "1"), so its scripts can read ours."""
        return self.question_id if self.official_id is None else self.official_id


@dataclass
class Scored:
    metrics: dict[str, float]  # in the units the paper prints (POPE F1 85.9, MME perception 1510.7)
    per_sample: list[dict[str, Any]]  # one row per answer: question_id, answer, parsed, label, correct
    notes: list[str] = field(default_factory=list)  # what a reader of the numbers must know (left out...)


class Benchmark:
    """Base class of a benchmark plug-in.

    `limit` in `load` keeps the first `limit` questions (file order) of each group the headline
    averages or sums over (POPE's splits, MME's subtasks), so a shortened run still covers them all.
    """

    id: ClassVar[str] = ""
    headline: ClassVar[str] = ""  # the metric the paper prints
    max_new_tokens: ClassVar[int] = 128  # the official decode setting (LLaVA model_vqa_loader: 128)
    needs_judge: ClassVar[bool] = False  # judged benchmarks get a `matrix.benchmarks.judge.Judge` in `score`

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        """Read the official files under `root` (LLaVA's eval folder) into samples. `images=False`:
        scoring only (`matrix score`): image files are not required, opened or written."""
        raise NotImplementedError

    def official_prompt(self, sample: Sample) -> str:
        """The `prompt` LLaVA's answer file records for this question (some scripts read it back)."""
        return sample.question

    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        """Score `answers[i]` for `samples[i]` by the official rules (`judge`: set when `needs_judge`)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<benchmark {self.id} headline={self.headline}>"


def check_answers(samples: list[Sample], answers: list[str]) -> None:
    """A length mismatch would silently shift every answer onto the wrong question."""
    if len(samples) != len(answers):
        raise ValueError(f"{len(answers)} answers for {len(samples)} questions")


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise BenchmarkFileError(f"{path} not found: expected {what}")
    return path


def image_file(path: Path, what: str, images: bool) -> Path:
    """An image's path, required to exist only when the questions are to be answered (`images`)."""
    return require(path, what) if images else path


def read_jsonl(path: Path, what: str) -> list[dict]:
    """One JSON object per line (blank lines skipped); errors name the file, line and expected content. A
    file without a single row is an error too: a benchmark of 0 questions would print no number at all."""
    require(path, what)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BenchmarkFileError(f"{path}:{n}: not a JSON line ({e.msg}); expected {what}") from None
        if not isinstance(row, dict):
            raise BenchmarkFileError(f"{path}:{n}: expected a JSON object per line ({what})")
        rows.append(row)
    if not rows:
        raise BenchmarkFileError(f"{path}: empty file; expected {what}")
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def ratio(num: float, den: float) -> float:
    """num/den, 0 when den is 0 (the official scripts would divide by zero there)."""
    return num / den if den else 0.0


class GradingTemplate:
    """Mixin of a judged benchmark whose grading template (ours, `default_template`) a file can replace:
    `benchmarks[].template` in a spec, or `Bench(template_path=...)` in code."""

    default_template: ClassVar[str] = ""
    template_what: ClassVar[str] = "a grading template"  # named when the file is missing
    template_path: ClassVar[Path | None] = None

    def __init__(self, template_path: Path | None = None):
        if template_path is not None:
            self.template_path = Path(template_path)

    def template(self) -> str:
        if self.template_path is None:
            return self.default_template
        return require(Path(self.template_path), self.template_what).read_text(encoding="utf-8")
