"""POPE: object-existence yes/no questions under random, popular and adversarial negative sampling.

Files (LLaVA layout, under the eval folder): `pope/llava_pope_test.jsonl` (question_id, image, text
with the short-answer suffix, category), labels `pope/coco/coco_pope_{category}.json` (one JSON object
per line with a `label`), images in `pope/val2014/`. Scored as LLaVA's eval_pope.py does; the number
papers print is the mean F1 over the three splits (x100).
"""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from benchmarks.base import (
    BENCHMARKS,
    SHORT_ANSWER_SUFFIX,
    Benchmark,
    BenchmarkFileError,
    Sample,
    Scored,
    ratio,
    read_jsonl,
    write_jsonl,
)
from matrix.world import language as L
from matrix.world.scene import SHAPES, draw_scene, render

CATEGORIES = ("random", "popular", "adversarial")


def normalise_answer(text: str) -> str:
    """LLaVA's rule: first sentence, commas removed, "no"/"No"/"not" among the words -> no, else yes."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "no" in words or "not" in words) else "yes"


def split_metrics(labels: list[str], preds: list[str]) -> dict[str, float]:
    tp = sum(p == "yes" and t == "yes" for p, t in zip(preds, labels))
    fp = sum(p == "yes" and t == "no" for p, t in zip(preds, labels))
    tn = sum(p == "no" and t == "no" for p, t in zip(preds, labels))
    fn = sum(p == "no" and t == "yes" for p, t in zip(preds, labels))
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": 100 * ratio(tp + tn, len(labels)),
        "precision": 100 * precision,
        "recall": 100 * recall,
        "f1": 100 * ratio(2 * precision * recall, precision + recall),
        "yes_ratio": 100 * ratio(tp + fp, len(labels)),
    }


@BENCHMARKS.register("pope")
class Pope(Benchmark):
    id = "pope"
    headline = "f1"
    max_new_tokens = 128

    def synthesize(self, root: Path, size: int, seed: int) -> None:
        rng = random.Random(f"pope:{seed}")
        base = Path(root) / "pope"
        (base / "val2014").mkdir(parents=True, exist_ok=True)
        scenes = []
        for i in range(size):
            scene = draw_scene(rng)
            name = f"pope_{seed}_{i:06d}.png"
            render(scene).save(base / "val2014" / name)
            scenes.append((name, scene))
        frequency = Counter(o.shape for _, s in scenes for o in s.objects)
        co_occurrence: dict[str, Counter] = {s: Counter() for s in SHAPES}
        for _, s in scenes:
            for a in s.shapes():
                co_occurrence[a].update(b for b in s.shapes() if b != a)
        questions, qid = [], 0
        labels: dict[str, list[dict]] = {c: [] for c in CATEGORIES}
        for category in CATEGORIES:
            for name, scene in scenes:
                present = sorted(scene.shapes())
                absent = [s for s in SHAPES if s not in present]
                if category == "random":
                    negatives = rng.sample(absent, len(present))
                elif category == "popular":
                    negatives = sorted(absent, key=lambda s: (-frequency[s], s))[: len(present)]
                else:
                    score = Counter()
                    for p in present:
                        score.update(co_occurrence[p])
                    negatives = sorted(absent, key=lambda s: (-score[s], s))[: len(present)]
                pairs = [(s, "yes") for s in present] + [(s, "no") for s in negatives]
                rng.shuffle(pairs)
                for shape, label in pairs:
                    qid += 1
                    text = L.existence_question(shape)
                    questions.append({"question_id": qid, "image": name, "text": text + SHORT_ANSWER_SUFFIX,
                                      "category": category})
                    labels[category].append({"question_id": qid, "image": name, "text": text, "label": label})
        write_jsonl(base / "llava_pope_test.jsonl", questions)
        for category in CATEGORIES:
            write_jsonl(base / "coco" / f"coco_pope_{category}.json", labels[category])

    def load(self, root: Path, limit: int | None = None) -> list[Sample]:
        base = Path(root) / "pope"
        rows = read_jsonl(base / "llava_pope_test.jsonl", "POPE questions (question_id, image, text, category)")
        labels = {c: read_jsonl(base / "coco" / f"coco_pope_{c}.json", f"POPE {c} labels, one JSON object per line")
                  for c in CATEGORIES}
        seen: Counter = Counter()
        samples = []
        for row in rows[:limit] if limit else rows:
            category = row.get("category")
            if category not in labels:
                raise BenchmarkFileError(f"{base / 'llava_pope_test.jsonl'}: question {row.get('question_id')} has "
                                         f"category {category!r}; expected one of {', '.join(CATEGORIES)}")
            # Labels are matched to questions by order within each category, as the official script does.
            index = seen[category]
            seen[category] += 1
            if index >= len(labels[category]):
                raise BenchmarkFileError(f"{base / 'coco' / f'coco_pope_{category}.json'}: fewer labels than questions")
            samples.append(Sample(str(row["question_id"]), base / "val2014" / row["image"], row["text"],
                                  {"category": category, "label": labels[category][index]["label"]}))
        return samples

    def score(self, samples: list[Sample], answers: list[str]) -> Scored:
        per_sample, metrics = [], {}
        by_category: dict[str, tuple[list[str], list[str]]] = {c: ([], []) for c in CATEGORIES}
        for s, a in zip(samples, answers):
            pred = normalise_answer(a)
            label = s.meta["label"]
            by_category[s.meta["category"]][0].append(label)
            by_category[s.meta["category"]][1].append(pred)
            per_sample.append({"question_id": s.question_id, "category": s.meta["category"], "answer": a,
                               "parsed": pred, "label": label, "correct": pred == label})
        f1s = []
        for category, (labels, preds) in by_category.items():
            if not labels:
                continue
            for name, value in split_metrics(labels, preds).items():
                metrics[f"{category}_{name}"] = value
            f1s.append(metrics[f"{category}_f1"])
        metrics["f1"] = sum(f1s) / len(f1s) if f1s else 0.0
        metrics["accuracy"] = 100 * ratio(sum(r["correct"] for r in per_sample), len(per_sample))
        metrics["yes_ratio"] = 100 * ratio(sum(r["parsed"] == "yes" for r in per_sample), len(per_sample))
        return Scored(metrics, per_sample)
