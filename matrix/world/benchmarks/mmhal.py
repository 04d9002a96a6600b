"""MMHal-Bench's synthetic twin: `size` images, one question each, the types cycling in MMHal's order
(attribute, adversarial, comparison, counting, relation, environment, holistic, other), each with a
standard answer true of the scene. Each entry of `response_template.json` also holds its `scene`."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.benchmarks.mmhal import IMAGE_DIR, QUESTION_TYPES, TEMPLATE_FILE
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.datasets import unique_named
from matrix.world.scene import COLOURS, SHAPES, Scene, draw_scene, render


def _question(kind: str, scene: Scene, rng: random.Random) -> tuple[str, str]:
    """One MMHal-style question of `kind` about `scene` and its true answer."""
    named = unique_named(scene)
    if kind == "attribute":
        obj = rng.choice(named)
        return language.colour_question(obj), f"The {obj.shape} at the {obj.position} is {obj.colour}."
    if kind == "adversarial":  # asks about a shape that is not there
        shape = language.absent_shape(scene, rng)
        return f"What color is the {shape} in the image?", f"There is no {shape} in the image."
    if kind == "comparison":
        a, b = rng.sample(named, 2)
        higher = a if a.row < b.row else b if b.row < a.row else None
        answer = (f"The {higher.name} is higher." if higher else
                  f"They are at the same height: the {a.name} and the {b.name} share a row.")
        return f"Which is higher in the image, the {a.name} or the {b.name}?", answer
    if kind == "counting":
        shape = rng.choice(SHAPES)
        n = scene.count(shape)
        return language.count_question(shape), f"There {'is' if n == 1 else 'are'} {language.NUMBER_WORDS[n]} " \
            f"{language.plural(shape, n)}."
    if kind == "relation":
        a, b = rng.sample(named, 2)
        side = "left of" if a.col < b.col else "right of" if a.col > b.col else "in the same column as"
        return f"Where is the {a.name} relative to the {b.name}?", f"The {a.name} is {side} the {b.name}."
    if kind == "environment":
        return "What is the background of the image like?", "A plain, light, almost white background."
    if kind == "holistic":
        return "Describe the image.", language.caption(scene)
    colours = sorted({o.colour for o in scene.objects}, key=list(COLOURS).index)
    return "Which colors appear in the image?", "The colors are " + ", ".join(colours) + "."


@SYNTHETIC_BENCHMARKS.register("mmhal")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images, one question each, types cycling in MMHal's order."""
    rng = random.Random(f"mmhal:{seed}")
    base = Path(root) / "mmhal-bench"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(size):
        kind = QUESTION_TYPES[i % len(QUESTION_TYPES)]
        scene = draw_scene(rng, min_objects=2 if kind in ("comparison", "relation") else 1)
        while not unique_named(scene) or (kind in ("comparison", "relation") and len(unique_named(scene)) < 2):
            scene = draw_scene(rng, min_objects=2)
        question, answer = _question(kind, scene, rng)
        name = f"shapes_{i:04d}.png"
        render(scene).save(base / IMAGE_DIR / name)
        rows.append({"question_type": kind, "question_topic": "shapes", "image_id": f"shapes_{i:04d}",
                     "image_src": f"https://example.invalid/mmhal/{name}",
                     "image_content": sorted({o.name for o in scene.objects}), "question": question,
                     "gt_answer": answer, "model_answer": "", "scene": scene.to_json()})
    (base / TEMPLATE_FILE).write_text(json.dumps(rows, indent=1))
