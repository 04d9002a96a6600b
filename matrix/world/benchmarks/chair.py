"""CHAIR's synthetic twin: `size` crowded scenes (3-6 objects, `scene.CROWDED`, as COCO's images are), one
detail question each. Its object categories are the world's coloured shapes ("red circle", 36), so naming
a shape in the wrong colour is a hallucinated object; the twin writes its own synonym table
(`chair/synonyms.txt`, which the CHAIR reader prefers to the shape table it falls back on): each object's
name, then the same colour with each one-word synonym of its shape ("red disc"). COCO-style instances come
from the scene, with five true reference captions per image, one naming the shapes by synonyms. Also
writes `chair/ground_truth.json` (`{image: scene}`), which loading does not read."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.chair import CAPTIONS, IMAGE_DIR, INSTANCES, PROMPT, QUESTION_FILE, SYNONYMS
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.scene import CROWDED, OBJECTS, draw_scene, render


def synonym_table() -> str:
    """CHAIR's `synonyms.txt` for the world's objects: one line per object, its name first."""
    lines = []
    for name in OBJECTS:
        colour, shape = name.split(" ")
        lines.append(", ".join([name] + [f"{colour} {w}" for w in language.one_word_synonyms(shape)]))
    return "\n".join(lines) + "\n"


@SYNTHETIC_BENCHMARKS.register("chair")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images, one detail question each; instances from the scene, five reference captions."""
    rng = random.Random(f"chair:{seed}")
    base = Path(root) / "chair"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(OBJECTS)]
    images, instances, captions, questions, truth = [], [], [], [], {}
    for i in range(size):
        scene = draw_scene(rng, *CROWDED)
        image_id, name = i + 1, f"shapes_val_{i:06d}.png"
        render(scene).save(base / IMAGE_DIR / name)
        images.append({"id": image_id, "file_name": name})
        for o in scene.objects:
            instances.append({"id": len(instances) + 1, "image_id": image_id,
                              "category_id": OBJECTS.index(o.name) + 1})
        for text in language.reference_captions(scene, rng):
            captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": text})
        questions.append({"question_id": image_id, "image": name, "text": PROMPT})
        truth[name] = scene.to_json()
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    (base / INSTANCES).write_text(json.dumps({"images": images, "annotations": instances,
                                              "categories": categories}))
    (base / CAPTIONS).write_text(json.dumps({"images": images, "annotations": captions}))
    (base / SYNONYMS).write_text(synonym_table())
    write_jsonl(base / QUESTION_FILE, questions)
    (base / "ground_truth.json").write_text(json.dumps(truth, indent=1))
