"""POPE: object-existence yes/no questions under random, popular and adversarial negative sampling.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/pope.sh` layout):

- `pope/llava_pope_test.jsonl`: `{"question_id", "image", "text", "category"}` per line, `text` =
  question + LLaVA's short-answer suffix, `category` = random | popular | adversarial;
- `pope/coco/coco_pope_{category}.json`: POPE's label files (commit e3e3926), one JSON object per line
  `{"question_id", "image", "text", "label": "yes"|"no"}`, matched to questions by order per category;
- `pope/val2014/<image>`: the images.

Scored by LLaVA's `eval_pope.py` rules; the number papers print is the mean F1 of the three splits
(LLaVA issue #626), x100 here. The synthetic version also writes `pope/ground_truth.json`
(`{image: scene}`), which loading does not read.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
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
    write_jsonl,
)
from matrix.world import language
from matrix.world.scene import SHAPES, Scene, draw_scene, render

SPLITS = ("adversarial", "popular", "random")  # the order of LLaVA's question file
QUESTION_FILE = "llava_pope_test.jsonl"
LABEL_DIR = "coco"
IMAGE_DIR = "val2014"
# Official POPE asks 3 present + 3 absent objects of 80 categories per image. The shapes world has 6
# categories, so at most 2 of each: at least 4 shapes stay absent and the three samplers can differ.
PER_IMAGE = 2


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


# ---- negative sampling (synthetic files) ----------------------------------------------------------
class _Stats:
    """Shape statistics over the sampled images: what popular and adversarial sampling rank by."""

    def __init__(self, scenes: list[Scene]):
        self.frequency = Counter(s for scene in scenes for s in scene.shapes())
        self.co_occurrence = {a: Counter() for a in SHAPES}
        for scene in scenes:
            for a in scene.shapes():
                self.co_occurrence[a].update(b for b in scene.shapes() if b != a)

    def rank(self, shapes: list[str], score: Callable[[str], int]) -> list[str]:
        # Ties: the more frequent shape first, then SHAPES order, so the files are reproducible.
        return sorted(shapes, key=lambda s: (-score(s), -self.frequency[s], SHAPES.index(s)))


def _negatives(split: str, scene: Scene, k: int, stats: _Stats, rng: random.Random) -> list[str]:
    absent = [s for s in SHAPES if s not in scene.shapes()]
    if split == "random":
        return rng.sample(absent, k)
    if split == "popular":  # the most frequent shapes of the sampled set that this image lacks
        return stats.rank(absent, lambda s: stats.frequency[s])[:k]
    # adversarial: the shapes that co-occur most with this image's shapes
    return stats.rank(absent, lambda s: sum(stats.co_occurrence[p][s] for p in scene.shapes()))[:k]


@BENCHMARKS.register("pope")
class Pope(Benchmark):
    id = "pope"
    headline = "f1"
    max_new_tokens = 128  # pope.sh runs model_vqa_loader with its default

    def synthesize(self, root: Path, size: int, seed: int) -> None:
        """`size` images, shared by the three splits; per image and split up to 2 yes + as many no."""
        rng = random.Random(f"pope:{seed}")
        base = Path(root) / "pope"
        (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        images: list[tuple[str, Scene, list[str]]] = []
        for i in range(size):
            scene = draw_scene(rng)
            name = f"shapes_val_{i:06d}.png"
            render(scene).save(base / IMAGE_DIR / name)
            present = sorted(scene.shapes())
            # The same present shapes are asked in every split, as POPE asks the same objects.
            images.append((name, scene, rng.sample(present, min(PER_IMAGE, len(present)))))
        stats = _Stats([scene for _, scene, _ in images])
        questions: list[dict] = []
        for split in SPLITS:
            labels: list[dict] = []
            for name, scene, positives in images:
                negatives = _negatives(split, scene, len(positives), stats, rng)
                for shape, label in _interleave(positives, negatives):
                    text = language.existence_question(shape)
                    labels.append({"question_id": len(labels) + 1, "image": name, "text": text,
                                   "label": label})
                    questions.append({"question_id": len(questions) + 1, "image": name,
                                      "text": text + language.SHORT_ANSWER_SUFFIX, "category": split})
            write_jsonl(base / LABEL_DIR / f"coco_pope_{split}.json", labels)
        write_jsonl(base / QUESTION_FILE, questions)
        truth = {name: scene.to_json() for name, scene, _ in images}
        (base / "ground_truth.json").write_text(json.dumps(truth, indent=1))

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


def _interleave(positives: list[str], negatives: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for yes, no in zip(positives, negatives):
        pairs += [(yes, "yes"), (no, "no")]
    return pairs


def _ordered(splits) -> list[str]:
    return [s for s in SPLITS if s in splits] + sorted(s for s in splits if s not in SPLITS)
