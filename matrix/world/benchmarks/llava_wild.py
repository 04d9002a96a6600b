"""LLaVA-Bench (in-the-wild)'s synthetic twin: `size` images with a uniquely named object, one question
each, the categories cycling conv, detail, complex; the reference answers (`answers_gpt4.jsonl`) and the
contexts (caption lines, plus the `scene`) are written from the scene."""
from __future__ import annotations

import random
from pathlib import Path

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.llava_wild import (
    ANSWER_FILE,
    CATEGORIES,
    CONTEXT_FILE,
    FOLDER,
    IMAGE_DIR,
    QUESTION_FILE,
)
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.datasets import unique_named
from matrix.world.scene import SHAPES, draw_scene, render


@SYNTHETIC_BENCHMARKS.register("llava-wild")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images, one question each, categories cycling conv, detail, complex."""
    rng = random.Random(f"llava-wild:{seed}")
    base = Path(root) / FOLDER
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    questions, answers, contexts = [], [], []
    for i in range(size):
        category = CATEGORIES[i % len(CATEGORIES)]
        scene = draw_scene(rng)
        while not unique_named(scene):
            scene = draw_scene(rng)
        name = f"shapes_{i:03d}.png"
        render(scene).save(base / IMAGE_DIR / name)
        if category == "conv":
            obj = rng.choice(unique_named(scene))
            question = language.colour_question(obj)
            reference = f"The {obj.shape} at the {obj.position} is {obj.colour}."
        elif category == "detail":
            question = language.DETAIL_PROMPT
            reference = f"{language.caption(scene)} {language.inventory(scene)} The background is plain and light."
        else:
            shape = rng.choice(SHAPES)
            left = len(scene.objects) - scene.count(shape)
            question = f"If every {shape} were removed, how many shapes would be left?"
            reference = (f"The image has {len(scene.objects)} shapes, {scene.count(shape)} of them "
                         f"{language.plural(shape, 2)}, so {left} would be left.")
        questions.append({"question_id": i, "image": name, "text": question, "category": category})
        answers.append({"question_id": i, "text": reference, "answer_id": f"ref-{i}", "model_id": "world"})
        contexts.append({"id": f"shapes_{i:03d}", "image": name,
                         "caption": f"{language.caption(scene)}\n{language.inventory(scene)}",
                         "scene": scene.to_json()})
    write_jsonl(base / QUESTION_FILE, questions)
    write_jsonl(base / ANSWER_FILE, answers)
    write_jsonl(base / CONTEXT_FILE, contexts)
