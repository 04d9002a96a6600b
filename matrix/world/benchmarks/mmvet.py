"""MM-Vet's synthetic twin: `size` images, one open question each, dealt in turn to shape (rec), colour
(rec), count (rec, math), position (rec, spat) and a total of two shapes (rec, math); numeric answers
accept the digit or the number word (`<OR>`). Each `mm-vet.json` entry also holds its `scene`."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.mmvet import IMAGE_DIR, QUESTION_FILE, TRUTH_FILE
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.datasets import unique_named
from matrix.world.scene import SHAPES, draw_scene, render


@SYNTHETIC_BENCHMARKS.register("mmvet")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images, one question each, dealt in turn: shape (rec), colour (rec), count (rec, math),
    position (rec, spat), total of two shapes (rec, math)."""
    rng = random.Random(f"mmvet:{seed}")
    base = Path(root) / "mm-vet"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    questions, truth = [], {}
    for i in range(size):
        kind = i % 5
        scene = draw_scene(rng)
        named = unique_named(scene)
        while kind in (0, 1, 3) and not named:
            scene = draw_scene(rng)
            named = unique_named(scene)
        name = f"v1_{i}.png"
        render(scene).save(base / IMAGE_DIR / name)
        if kind == 0:
            obj = rng.choice(named)
            q, a, caps = language.shape_question(obj), obj.shape, ["rec"]
        elif kind == 1:
            obj = rng.choice(named)
            q, a, caps = language.colour_question(obj), obj.colour, ["rec"]
        elif kind == 2:
            shape = rng.choice(SHAPES)
            n = scene.count(shape)
            q, a, caps = language.count_question(shape), f"{n}<OR>{language.NUMBER_WORDS[n]}", ["rec", "math"]
        elif kind == 3:
            obj = rng.choice(named)
            q, a, caps = language.position_question(obj), obj.position, ["rec", "spat"]
        else:
            first, second = rng.sample(SHAPES, 2)
            n = scene.count(first) + scene.count(second)
            q = f"How many {language.plural(first, 2)} and {language.plural(second, 2)} are there in total?"
            a, caps = f"{n}<OR>{language.NUMBER_WORDS[n]}", ["rec", "math"]
        questions.append({"question_id": i, "image": name, "text": q})
        truth[f"v1_{i}"] = {"imagename": name, "capability": caps, "question": q, "answer": a,
                            "scene": scene.to_json()}
    write_jsonl(base / QUESTION_FILE, questions)
    (base / TRUTH_FILE).write_text(json.dumps(truth, indent=1))
