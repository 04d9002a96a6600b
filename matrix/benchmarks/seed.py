"""SEED-Bench (image part): four-option multiple-choice questions, scored by exact letter match.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/seed.sh` layout):

- `seed_bench/llava-seed-bench.jsonl`: `{"question_id", "image", "text", "category"}` per line, `image`
  relative to `seed_bench/`, `text` = question + "\\nA. ...\\nB. ...\\nC. ...\\nD. ..." + the
  multiple-choice suffix;
- `seed_bench/SEED-Bench.json`: SEED's annotations, `{"questions": [{"question_id", "answer",
  "data_type": "image"|"video", "question_type_id", ...}], "question_type": {name: id}}`;
- the images (`seed_bench/SEED-Bench-image/...`).

Scored as LLaVA's `convert_seed_for_submission.py` does for `eval_only_type='image'`: an answer is
right when its text equals the answer letter exactly; `accuracy` (the headline, "SEED-Image") pools
every image question, and `type_<id>` gives each question type. Only image questions are loaded (the
video ones do not enter the number). The denominators are the official ones: every image question of
SEED-Bench.json, so one that the question file does not ask counts as wrong (`not_asked` counts them);
with `limit` (the first `limit` of each question type) they are the questions loaded. Where the
official script raises a KeyError (a question type with no right answer) we give 0.
max_new_tokens 128 (model_vqa_loader).
"""
from __future__ import annotations

import json
from collections import Counter
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

QUESTION_FILE = "llava-seed-bench.jsonl"
TRUTH_FILE = "SEED-Bench.json"
IMAGE_DIR = "SEED-Bench-image"
QUESTION_TYPES = {"Scene Understanding": 1, "Instance Identity": 2, "Instance Attributes": 3,
                  "Instance Location": 4, "Instances Counting": 5, "Spatial Relation": 6,
                  "Instance Interaction": 7, "Visual Reasoning": 8, "Text Understanding": 9,
                  "Action Recognition": 10, "Action Prediction": 11, "Procedure Understanding": 12}


@BENCHMARKS.register("seed")
class SeedBench(Benchmark):
    id = "seed"
    headline = "accuracy"
    max_new_tokens = 128  # seed.sh runs model_vqa_loader with its default

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        base = Path(root) / "seed_bench"
        qfile = base / QUESTION_FILE
        rows = read_jsonl(qfile, 'LLaVA\'s SEED-Bench questions, one {"question_id", "image", "text"} per line')
        tfile = require(base / TRUTH_FILE, "SEED-Bench's annotation file SEED-Bench.json "
                                           "({\"questions\": [...], \"question_type\": {...}})")
        try:
            data = json.loads(tfile.read_text(encoding="utf-8"))
            truth = {str(q["question_id"]): q for q in data["questions"]}
            names = {v: k for k, v in data["question_type"].items()}
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BenchmarkFileError(f"{tfile}: expected SEED-Bench's annotations, {{\"questions\": [{{question_id, "
                                     "answer, data_type, question_type_id}}], \"question_type\": {name: id}}") from None
        seen: Counter = Counter()
        # convert_seed_for_submission.py divides by every image question of the annotations, asked or not
        totals = Counter(q.get("question_type_id") for q in data["questions"] if q.get("data_type") == "image")
        samples = []
        for n, row in enumerate(rows, 1):
            missing = [k for k in ("question_id", "image", "text") if k not in row]
            if missing:
                raise BenchmarkFileError(f"{qfile}: question {n} lacks {', '.join(missing)}")
            qid = str(row["question_id"])
            if qid not in truth:
                raise BenchmarkFileError(f"{tfile}: no question {qid} (asked in {qfile}, line {n})")
            gold = truth[qid]
            if gold.get("data_type") != "image":
                continue
            qtype = gold["question_type_id"]
            seen[qtype] += 1
            if limit is not None and seen[qtype] > limit:
                continue
            image = image_file(base / row["image"], f"the SEED-Bench image {row['image']}", images)
            samples.append(Sample(qid, image, row["text"], {"label": gold["answer"], "question_type_id": qtype,
                                                            "question_type": names.get(qtype, str(qtype)),
                                                            "type_total": totals[qtype] if limit is None else None},
                                                            official_id=row["question_id"]))
        return samples

    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        per_sample = []
        for s, answer in zip(samples, answers):
            per_sample.append({"question_id": s.question_id, "question_type": s.meta["question_type"],
                               "question": s.question, "answer": answer, "parsed": answer, "label": s.meta["label"],
                               "correct": answer == s.meta["label"]})
        types = sorted({s.meta["question_type_id"] for s in samples})
        asked = Counter(s.meta["question_type_id"] for s in samples)
        totals = {t: next(s.meta.get("type_total") for s in samples if s.meta["question_type_id"] == t) or asked[t]
                  for t in types}
        correct = Counter(s.meta["question_type_id"] for s, r in zip(samples, per_sample) if r["correct"])
        metrics = {"accuracy": 100 * ratio(sum(correct.values()), sum(totals.values()))}
        for qtype in types:
            metrics[f"type_{qtype}"] = 100 * ratio(correct[qtype], totals[qtype])
        metrics["not_asked"] = float(sum(totals.values()) - len(samples))
        return Scored(metrics, per_sample)
