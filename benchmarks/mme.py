"""MME: paired yes/no questions per image; a subtask scores 100*acc + 100*acc+ (both answers right).

Files (LLaVA layout, under the eval folder): `MME/llava_mme.jsonl` (question_id "category/file",
image relative to the release folder, text with LLaVA's short-answer suffix in place of MME's
"Please answer yes or no.") and the official ground truth in `MME/MME_Benchmark_release_version/
<category>/`: `<image stem>.txt` beside the image, or in `questions_answers_YES_or_NO/` next to an
`images/` folder, each line `question<TAB>answer`. Perception = sum over the ten perception subtasks
present (max 2000), cognition = sum over the four cognition subtasks present (max 800).
"""
from __future__ import annotations

import random
from collections import defaultdict
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
    require,
    write_jsonl,
)
from matrix.world import language as L
from matrix.world.scene import COLOURS, ROWS, COLS, draw_scene, render

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
              "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
MME_SUFFIX = " Please answer yes or no."
RELEASE = "MME_Benchmark_release_version"


def parse_prediction(text: str) -> str:
    """The official rule: exactly yes/no, else yes/no within the first four characters, else other."""
    text = text.strip().lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def _synthetic_pair(category: str, scene, rng: random.Random) -> list[tuple[str, str]]:
    obj = rng.choice(scene.objects)
    if category == "existence":
        shape, colour = L.absent_object(scene, rng, adversarial=True)
        yes, no = L.existence_question(obj.shape, obj.colour), L.existence_question(shape, colour)
    elif category == "count":
        n = scene.count(obj.shape)
        wrong = rng.choice([k for k in (1, 2, 3) if k != n])
        yes, no = L.count_check_question(obj.shape, n), L.count_check_question(obj.shape, wrong)
    elif category == "position":
        positions = [f"{r} {c}" if (r, c) != ("middle", "center") else "center" for r in ROWS for c in COLS]
        wrong = rng.choice([p for p in positions if p != obj.position])
        yes, no = L.position_check_question(obj, obj.position), L.position_check_question(obj, wrong)
    else:  # color
        wrong = rng.choice([c for c in COLOURS if c != obj.colour])
        yes, no = L.colour_check_question(obj, obj.colour), L.colour_check_question(obj, wrong)
    # MME phrases "in this image"; our world phrases "in the image": keep MME's wording.
    return [(yes.replace("in the image", "in this image"), "Yes"), (no.replace("in the image", "in this image"), "No")]


@BENCHMARKS.register("mme")
class MME(Benchmark):
    id = "mme"
    headline = "perception"
    max_new_tokens = 128

    def synthesize(self, root: Path, size: int, seed: int) -> None:
        """`size` images per subtask for existence, count, position and color."""
        rng = random.Random(f"mme:{seed}")
        base = Path(root) / "MME"
        rows = []
        for category in ("existence", "count", "position", "color"):
            folder = base / RELEASE / category
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(size):
                scene = draw_scene(rng)
                name = f"{i:06d}.png"
                render(scene).save(folder / name)
                pairs = _synthetic_pair(category, scene, rng)
                (folder / f"{i:06d}.txt").write_text("".join(f"{q}{MME_SUFFIX}\t{a}\n" for q, a in pairs))
                for q, _ in pairs:
                    rows.append({"question_id": f"{category}/{name}", "image": f"{category}/{name}",
                                 "text": q + SHORT_ANSWER_SUFFIX, "category": category})
        write_jsonl(base / "llava_mme.jsonl", rows)

    def _ground_truth(self, release: Path, image: str) -> dict[str, str]:
        """question (without MME's suffix) -> answer, for one image."""
        path = release / image
        stem = path.stem
        for candidate in (path.with_suffix(".txt"), path.parent.parent / "questions_answers_YES_or_NO" / f"{stem}.txt"):
            if candidate.exists():
                out = {}
                for n, line in enumerate(candidate.read_text().splitlines(), 1):
                    if line.strip():
                        if "\t" not in line:
                            raise BenchmarkFileError(f"{candidate}:{n}: expected 'question<TAB>answer'")
                        q, a = line.split("\t", 1)
                        out[_question_key(q)] = a.strip()
                return out
        raise BenchmarkFileError(f"{path.with_suffix('.txt')} not found: expected the MME ground truth for {image} "
                                 f"(question<TAB>answer lines) beside the image or in questions_answers_YES_or_NO/")

    def load(self, root: Path, limit: int | None = None) -> list[Sample]:
        base = Path(root) / "MME"
        rows = read_jsonl(base / "llava_mme.jsonl", "MME questions (question_id, image, text, category)")
        release = require(base / RELEASE, "the official MME_Benchmark_release_version folder")
        truth: dict[str, dict[str, str]] = {}
        samples = []
        for row in rows[:limit] if limit else rows:
            image = row["image"]
            if image not in truth:
                truth[image] = self._ground_truth(release, image)
            key = _question_key(row["text"])
            if key not in truth[image]:
                raise BenchmarkFileError(f"{release / image}: no ground truth for question {row['text']!r}")
            category = row.get("category") or row["question_id"].split("/")[0]
            samples.append(Sample(str(row["question_id"]), release / image, row["text"],
                                  {"category": category, "image": image, "label": truth[image][key]}))
        return samples

    def score(self, samples: list[Sample], answers: list[str]) -> Scored:
        per_sample = []
        by_image: dict[tuple[str, str], list[bool]] = defaultdict(list)
        for s, a in zip(samples, answers):
            pred = parse_prediction(a)
            correct = pred == s.meta["label"].strip().lower()
            by_image[(s.meta["category"], s.meta["image"])].append(correct)
            per_sample.append({"question_id": s.question_id, "category": s.meta["category"], "answer": a,
                               "parsed": pred, "label": s.meta["label"], "correct": correct})
        metrics: dict[str, float] = {}
        for category in sorted({c for c, _ in by_image}):
            images = [v for (c, _), v in by_image.items() if c == category]
            acc = ratio(sum(sum(v) for v in images), sum(len(v) for v in images))
            acc_plus = ratio(sum(all(v) for v in images), len(images))
            metrics[category] = 100 * acc + 100 * acc_plus
            metrics[f"{category}_acc"] = 100 * acc
            metrics[f"{category}_acc_plus"] = 100 * acc_plus
        metrics["perception"] = sum(metrics.get(c, 0.0) for c in PERCEPTION)
        metrics["cognition"] = sum(metrics.get(c, 0.0) for c in COGNITION)
        return Scored(metrics, per_sample)


def _question_key(text: str) -> str:
    """A question without either suffix, so LLaVA's file and MME's ground truth meet."""
    for suffix in (SHORT_ANSWER_SUFFIX, MME_SUFFIX, "Please answer yes or no."):
        text = text.replace(suffix, "")
    return text.strip()
