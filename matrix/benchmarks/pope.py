"""POPE: object-existence yes/no questions under random, popular and adversarial negative sampling.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/pope.sh` layout):

- `pope/llava_pope_test.jsonl`: `{"question_id", "image", "text", "category"}` per line, `text` =
  question + LLaVA's short-answer suffix, `category` = random | popular | adversarial;
- `pope/coco/coco_pope_{category}.json`: POPE's label files (commit e3e3926), one JSON object per line
  `{"question_id", "image", "text", "label": "yes"|"no"}`, matched to questions by order per category;
- `pope/val2014/<image>`: the images.

Scored by LLaVA's `eval_pope.py` rules; the number papers print is the mean F1 of the three splits
(LLaVA issue #626), x100 here. The synthetic version (`matrix/world/benchmarks/pope.py`) also writes
`pope/ground_truth.json` (`{image: scene}`), which loading does not read.
"""
from __future__ import annotations

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

SPLITS = ("adversarial", "popular", "random")  # the order of LLaVA's question file
QUESTION_FILE = "llava_pope_test.jsonl"
LABEL_DIR = "coco"
IMAGE_DIR = "val2014"


# ---- scoring ------------------------------------------------------------------------------------
def parse_answer(text: str) -> str:
    """eval_pope.py: first sentence, commas removed, split on spaces; "No"/"no"/"not" -> no, else yes."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "no" in words or "not" in words) else "yes"


def split_metrics(labels: list[str], preds: list[str]) -> dict[str, float]:
    """eval_pope.py's five numbers, x100. Where it would divide by zero (no "yes" predicted) we give 0."""
    tp = sum(p == "yes" and t == "yes" for p, t in zip(preds, labels))
    fp = sum(p == "yes" and t == "no" for p, t in zip(preds, labels))
    tn = sum(p == "no" and t == "no" for p, t in zip(preds, labels))
    fn = sum(p == "no" and t == "yes" for p, t in zip(preds, labels))
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": 100 * ratio(tp + tn, tp + tn + fp + fn),
        "precision": 100 * precision,
        "recall": 100 * recall,
        "f1": 100 * ratio(2 * precision * recall, precision + recall),
        "yes_ratio": 100 * ratio(tp + fp, len(preds)),
    }


@BENCHMARKS.register("pope")
class Pope(Benchmark):
    id = "pope"
    headline = "f1"
    max_new_tokens = 128  # pope.sh runs model_vqa_loader with its default

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        base = Path(root) / "pope"
        qfile = base / QUESTION_FILE
        rows = read_jsonl(qfile, 'POPE questions, one {"question_id", "image", "text", "category"} per line')
        by_split: dict[str, list[dict]] = {}
        for n, row in enumerate(rows, 1):
            missing = [k for k in ("question_id", "image", "text", "category") if k not in row]
            if missing:
                raise BenchmarkFileError(f"{qfile}: question {n} lacks {', '.join(missing)}")
            by_split.setdefault(row["category"], []).append(row)
        labels = {split: self._labels(base, split, qs) for split, qs in by_split.items()}
        seen: Counter = Counter()
        samples = []
        for row in rows:  # file order; `limit` counts per split
            split = row["category"]
            index = seen[split]
            seen[split] += 1
            if limit is not None and index >= limit:
                continue
            image = image_file(base / IMAGE_DIR / row["image"], f"the POPE image {row['image']} (COCO val2014)",
                               images)
            samples.append(Sample(str(row["question_id"]), image, row["text"],
                                  {"category": split, "label": labels[split][index], "image": row["image"]},
                                  official_id=row["question_id"]))
        return samples

    @staticmethod
    def _labels(base: Path, split: str, questions: list[dict]) -> list[str]:
        """The split's labels, matched to its questions by order, as eval_pope.py matches them."""
        path = base / LABEL_DIR / f"coco_pope_{split}.json"
        rows = read_jsonl(path, f'POPE {split} labels (POPE commit e3e3926 output/coco), one '
                                '{"question_id", "image", "text", "label"} per line')
        if len(rows) != len(questions):
            raise BenchmarkFileError(f"{path}: {len(rows)} labels for {len(questions)} {split} questions in "
                                     f"{base / QUESTION_FILE}; labels are matched to questions by order")
        out = []
        for n, (label, question) in enumerate(zip(rows, questions), 1):
            if label.get("label") not in ("yes", "no"):
                raise BenchmarkFileError(f"{path}: line {n}: expected \"label\": \"yes\" or \"no\", "
                                         f"got {label.get('label')!r}")
            # Order is the only link between the two files: check it where both name the image.
            if "image" in label and label["image"] != question["image"]:
                raise BenchmarkFileError(
                    f"{path}: line {n} labels image {label['image']} but {split} question "
                    f"{question['question_id']} asks about {question['image']}: "
                    "the label and question files are out of order")
            out.append(label["label"])
        return out

    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        per_sample: list[dict] = []
        by_split: dict[str, tuple[list[str], list[str]]] = {}
        for s, answer in zip(samples, answers):
            parsed, label = parse_answer(answer), s.meta["label"]
            labels, preds = by_split.setdefault(s.meta["category"], ([], []))
            labels.append(label)
            preds.append(parsed)
            per_sample.append({"question_id": s.question_id, "category": s.meta["category"],
                               "image": s.meta.get("image"), "question": s.question, "answer": answer,
                               "parsed": parsed, "label": label, "correct": parsed == label})
        metrics: dict[str, float] = {}
        per_split = {split: split_metrics(*by_split[split]) for split in _ordered(by_split)}
        for split, values in per_split.items():
            metrics.update({f"{split}_{name}": v for name, v in values.items()})
        if per_split:
            # The headline `f1` is the mean F1 of the splits (issue #626); the other means go with it.
            for name in ("f1", "accuracy", "precision", "recall", "yes_ratio"):
                metrics[name] = sum(v[name] for v in per_split.values()) / len(per_split)
        return Scored(metrics, per_sample)


def _ordered(splits) -> list[str]:
    return [s for s in SPLITS if s in splits] + sorted(s for s in splits if s not in SPLITS)
