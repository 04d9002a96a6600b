"""SEED-Bench's synthetic twin: `size` image questions (colour, shape, count; four options) plus every
sixth question a video one, which the files hold and loading skips. Also writes
`seed_bench/ground_truth.json` (`{question id: scene}`), which loading does not read."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.seed import IMAGE_DIR, QUESTION_FILE, QUESTION_TYPES, TRUTH_FILE
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.scene import draw_scene, render

VIDEO_EVERY = 6  # every sixth question is a video one (in the files, never loaded)


def _question_type(question: str) -> str:
    if question.startswith("What color"):
        return "Instance Attributes"
    if question.startswith("How many"):
        return "Instances Counting"
    return "Instance Identity"


@SYNTHETIC_BENCHMARKS.register("seed")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` image questions (colour, shape, count; four options) plus one video question per five,
    which the files hold and loading skips."""
    rng = random.Random(f"seed:{seed}")
    base = Path(root) / "seed_bench"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    rows, questions, truth = [], [], {}
    n_image = 0
    while n_image < size:
        qid = str(100000 + len(questions))
        video = len(questions) % VIDEO_EVERY == VIDEO_EVERY - 1
        scene = draw_scene(rng)
        question, options, answer = language.choice_item(scene, rng, 4)
        qtype = "Action Recognition" if video else _question_type(question)
        name = f"{qid}.png" if video else f"{1000 + n_image}.png"
        folder = "SEED-Bench-video-image" if video else IMAGE_DIR
        (base / folder).mkdir(exist_ok=True)
        render(scene).save(base / folder / name)
        if not video:
            n_image += 1
            truth[qid] = scene.to_json()
        rows.append({"image": f"{folder}/{name}", "question_id": qid, "category": qtype,
                     "text": f"{question}\n{language.options_text(options)}{language.MULTIPLE_CHOICE_SUFFIX}"})
        questions.append({"question_id": qid, "question": question, "answer": "ABCD"[answer],
                          **{f"choice_{c}": o for c, o in zip("abcd", options)},
                          "data_id": name, "data_type": "video" if video else "image",
                          "question_type_id": QUESTION_TYPES[qtype]})
    write_jsonl(base / QUESTION_FILE, rows)
    (base / TRUTH_FILE).write_text(json.dumps({"questions": questions, "question_type": QUESTION_TYPES},
                                              indent=1))
    (base / "ground_truth.json").write_text(json.dumps(truth, indent=1))
