"""GQA (testdev-balanced): short answers about scenes, scored by exact match.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/gqa.sh` layout):

- `gqa/llava_gqa_testdev_balanced.jsonl`: `{"question_id", "image", "text", "category"}` per line,
  `text` = question + LLaVA's short-answer suffix;
- `gqa/data/testdev_balanced_questions.json`: GQA's ground truth, `{question_id: {"question",
  "answer", "imageId", "isBalanced", "types": {"structural", "semantic", "detailed"}, ...}}`;
- `gqa/data/images/<image>`: the images.

Scoring: LLaVA's `convert_gqa_for_eval.py` turns an answer into `text.rstrip('.').lower()`, and GQA's
`eval.py` compares that with the gold answer as raw strings (`predicted == gold`, no other
normalisation: no whitespace stripping, no article or number handling). Accuracy counts only
`isBalanced` questions (all of testdev-balanced); `binary`/`open` split it as eval.py does (open =
structural type "query"). max_new_tokens 128 (model_vqa_loader).
"""
from __future__ import annotations

import json
from pathlib import Path

from matrix.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    BenchmarkFileError,
    Sample,
    Scored,
    check_answers,
    ratio,
    read_jsonl,
    image_file,
    require,
)

QUESTION_FILE = "llava_gqa_testdev_balanced.jsonl"
TRUTH_FILE = "data/testdev_balanced_questions.json"
IMAGE_DIR = "data/images"


def normalise(text: str) -> str:
    """convert_gqa_for_eval.py: trailing periods off, lowercased. eval.py then compares exactly."""
    return text.rstrip(".").lower()


@BENCHMARKS.register("gqa")
class GQA(Benchmark):
    id = "gqa"
    headline = "accuracy"
    max_new_tokens = 128  # gqa.sh runs model_vqa_loader with its default

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        """Questions in file order; `limit` keeps the first `limit` (accuracy is one number)."""
        base = Path(root) / "gqa"
        qfile = base / QUESTION_FILE
        rows = read_jsonl(qfile, 'LLaVA\'s GQA questions, one {"question_id", "image", "text"} per line')
        tfile = require(base / TRUTH_FILE, "GQA's testdev_balanced_questions.json (gold answers by question id)")
        try:
            truth = json.loads(tfile.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise BenchmarkFileError(f"{tfile}: not JSON ({e.msg}); expected GQA's question file") from None
        samples = []
        for n, row in enumerate(rows[:limit] if limit is not None else rows, 1):
            missing = [k for k in ("question_id", "image", "text") if k not in row]
            if missing:
                raise BenchmarkFileError(f"{qfile}: question {n} lacks {', '.join(missing)}")
            qid = str(row["question_id"])
            if qid not in truth:
                raise BenchmarkFileError(f"{tfile}: no question {qid} (asked in {qfile}, line {n})")
            gold = truth[qid]
            image = image_file(base / IMAGE_DIR / row["image"], f"the GQA image {row['image']}", images)
            types = gold.get("types", {})
            samples.append(Sample(qid, image, row["text"], {
                "label": gold["answer"], "balanced": bool(gold.get("isBalanced", True)),
                "structural": types.get("structural"), "semantic": types.get("semantic")},
                official_id=row["question_id"]))
        return samples

    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        per_sample = []
        for s, answer in zip(samples, answers):
            parsed = normalise(answer)
            per_sample.append({"question_id": s.question_id, "question": s.question, "answer": answer,
                               "parsed": parsed, "label": s.meta["label"], "balanced": s.meta["balanced"],
                               "structural": s.meta["structural"], "correct": parsed == s.meta["label"]})
        balanced = [r for r in per_sample if r["balanced"]]
        metrics = {"accuracy": 100 * ratio(sum(r["correct"] for r in balanced), len(balanced))}
        for group in ("binary", "open"):
            rows = [r for r in balanced if ("open" if r["structural"] == "query" else "binary") == group]
            if rows:
                metrics[group] = 100 * ratio(sum(r["correct"] for r in rows), len(rows))
        return Scored(metrics, per_sample)
