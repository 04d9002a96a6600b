"""`matrix score`: score an existing answer file against a benchmark's official files, reading no image.

    result = score("pope", "playground/data/eval", "answers/llava-v1.5-13b.jsonl")
    result.metrics["f1"]            # the same scorer a sweep's evaluate stage runs
    print(render(result, "json"))   # the CLI's output

An answer file is LLaVA's `model_vqa*` output or a run's `answers.jsonl`: one JSON object per line with
`question_id` and `text` (and `prompt`, used only to tell apart questions that share an id, as MME's two
questions per image do). Answers are matched to the benchmark's questions by id, never by line order.

Judged benchmarks take a judge (the same client and on-disk cache as a sweep), or `replies`: a file of
judge replies stored by the official tool (MM-Vet's `*-grade-Nruns.json`, LLaVA-Bench's review
`.jsonl`), read back through this project's reply parsing and aggregation without asking anyone.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matrix.errors import UserError

__all__ = ["ScoreResult", "read_answers", "match_answers", "score", "render"]

NOT_COMPARABLE = ("graded with this project's own template: not comparable with published numbers "
                  "(give the official template file for that)")


@dataclass
class ScoreResult:
    benchmark: str
    path: Path
    answers: Path
    questions: int
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]]
    grading: dict[str, Any] = field(default_factory=dict)  # judged benchmarks: how the grades came about
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "path": str(self.path), "answers": str(self.answers),
                "questions": self.questions, "metrics": self.metrics, "grading": self.grading,
                "notes": self.notes}


def read_answers(path: Path) -> list[dict]:
    """The rows of an answer file; each needs `question_id` and a string `text`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such answer file (expected JSON lines with question_id and text)")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not a JSON line ({e.msg}); expected "
                                '{"question_id", "text", ...} per line') from None
            if not isinstance(row, dict) or "question_id" not in row or not isinstance(row.get("text"), str):
                raise UserError(f"{path}:{n}: expected an object with question_id and a string text "
                                "(LLaVA's answer-file fields)")
            rows.append(row)
    return rows


def _by_prompt(rows: list[dict], prompt: str) -> list[dict]:
    """The rows whose prompt is this question's: equal once "<image>" is ignored, else (an answer file
    that kept or dropped the answer-format suffix) one being the start of the other."""
    def norm(text: str) -> str:
        return text.replace("<image>", "").strip()

    prompt = norm(prompt)
    exact = [r for r in rows if norm(r["prompt"]) == prompt]
    return exact or [r for r in rows if norm(r["prompt"]).startswith(prompt) or prompt.startswith(norm(r["prompt"]))]


def match_answers(samples, rows: list[dict], path: Path, bench=None) -> tuple[list[str], int]:
    """`answers[i]` for `samples[i]`, found by question id (and prompt, where questions share an id).
    Returns the answers and how many rows answered no loaded question."""
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(str(row["question_id"]), []).append(row)
    shared = {}
    for s in samples:
        shared[s.question_id] = shared.get(s.question_id, 0) + 1
    answers, used, missing = [], set(), []
    for s in samples:
        candidates = [r for r in by_id.get(s.question_id, []) if id(r) not in used]
        if shared[s.question_id] > 1 and candidates and all("prompt" in r for r in candidates):
            prompt = bench.official_prompt(s) if bench is not None else s.question
            candidates = _by_prompt(candidates, prompt)
        if not candidates:
            missing.append(s.question_id)
            answers.append("")
            continue
        used.add(id(candidates[0]))  # questions sharing an id without prompts: in file order
        answers.append(candidates[0]["text"])
    if missing:
        raise UserError(f"{path}: no answer for {len(missing)} of {len(samples)} questions (first: question_id "
                        f"{missing[0]!r}); an answer file must answer every question scored")
    return answers, len(rows) - len(used)


def _open_judge(judge: dict | None):
    from matrix.benchmarks.judge import open_judge
    from matrix.spec import JudgeSpec
    from pydantic import ValidationError

    if judge is None:
        return None
    try:
        settings = JudgeSpec.model_validate(judge)
    except ValidationError as e:
        raise UserError("; ".join(f"--judge: {err['msg']} ({'.'.join(map(str, err['loc']))})"
                                  for err in e.errors())) from None
    return open_judge(settings)  # the sweep's cache directory (default_cache_dir), shared with sweeps


def score(benchmark: str, path: str | Path, answers: str | Path, *, judge: dict | None = None,
          template: str | Path | None = None, replies: str | Path | None = None,
          limit: int | None = None) -> ScoreResult:
    """Score `answers` (a file) on `benchmark`'s official files under `path` (LLaVA's eval folder).

    `judge`: JudgeSpec fields ({"model", "base_url", ...}) for judged benchmarks; `template`: the
    official grading template file, sent verbatim; `replies`: stored judge replies instead of a judge.
    """
    from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError
    from matrix.benchmarks.judge import JudgeError

    if benchmark not in BENCHMARKS:
        raise UserError(f"unknown benchmark {benchmark!r}; known: {', '.join(sorted(BENCHMARKS.names()))}")
    cls = BENCHMARKS.get(benchmark)
    root, answers = Path(path).expanduser(), Path(answers).expanduser()
    if not root.is_dir():
        raise UserError(f"--path {root}: no such folder (expected LLaVA's playground/data/eval layout)")
    kwargs = {}
    if template is not None:
        if not hasattr(cls, "template_path"):
            raise UserError(f"--template: {benchmark} is not graded by a judge; it takes no template")
        kwargs["template_path"] = Path(template).expanduser()
    bench = cls(**kwargs)
    if bench.needs_judge and judge is None and replies is None:
        raise UserError(f"{benchmark} is graded by a judge: give --judge MODEL (with --judge-url for a local "
                        "server), or --replies FILE with the official tool's stored grades")
    rows = read_answers(answers)
    grading: dict[str, Any] = {}
    notes: list[str] = []
    try:
        if replies is not None:
            if not hasattr(bench, "replay"):
                raise UserError(f"--replies: {benchmark} has no stored-reply format; it is scored by rules"
                                if not bench.needs_judge else f"--replies: {benchmark} cannot read stored replies")
            scored = bench.replay(root, Path(replies).expanduser(), rows)
            grading = {"source": "stored replies", "replies": str(replies), "comparable": True}
            n = len(scored.per_sample)
        else:
            samples = bench.load(root, limit=limit, images=False)
            texts, extra = match_answers(samples, rows, answers, bench)
            if extra and limit is None:
                notes.append(f"{extra} answers in {answers.name} match no question of {benchmark} and were ignored")
            handle = None
            if bench.needs_judge:
                handle = _open_judge(judge)
                own = getattr(bench, "template_path", None) is None
                grading = {"source": "judge", **handle.describe(),
                           "template": "ours" if own else str(bench.template_path), "comparable": not own}
                if own:
                    notes.append(NOT_COMPARABLE)
            scored = bench.score(samples, texts, judge=handle)
            if handle is not None:
                grading["usage"] = handle.usage()
            n = len(samples)
    except BenchmarkFileError as e:
        raise UserError(str(e)) from None
    except JudgeError as e:
        raise UserError(f"judge: {e}") from None
    return ScoreResult(benchmark, root, answers, n, scored.metrics, scored.per_sample, grading,
                       notes + list(scored.notes))


def render(result: ScoreResult, fmt: str = "table") -> str:
    """table: `metric  value` lines (3 decimals); json: `ScoreResult.to_json()`; csv: benchmark,metric,value."""
    if fmt == "json":
        return json.dumps(result.to_json(), indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["benchmark", "metric", "value"])
        for name, value in result.metrics.items():
            writer.writerow([result.benchmark, name, repr(float(value))])
        return buf.getvalue()
    if fmt != "table":
        raise UserError(f"--format {fmt!r}: expected table, json or csv")
    width = max([len(k) for k in result.metrics] + [6])
    lines = [f"{result.benchmark}: {result.questions} questions, answers {result.answers}"]
    lines += [f"  {name:<{width}}  {value:10.3f}" for name, value in result.metrics.items()]
    if result.grading:
        lines.append("  grading: " + ", ".join(f"{k}={v}" for k, v in result.grading.items() if k != "usage"))
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"
