"""CHAIR's synthetic twin: `size` images, one detail question each; COCO-style instances from the scene
(one category per shape) and five true reference captions per image, some naming shapes by a synonym of
`matrix/benchmarks/data/chair_synonyms.txt`. Also writes `chair/ground_truth.json` (`{image: scene}`),
which loading does not read."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.chair import CAPTIONS, IMAGE_DIR, INSTANCES, PROMPT, QUESTION_FILE
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.scene import SHAPES, draw_scene, render


@SYNTHETIC_BENCHMARKS.register("chair")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images, one detail question each; instances from the scene, five reference captions."""
    rng = random.Random(f"chair:{seed}")
    base = Path(root) / "chair"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": s} for i, s in enumerate(SHAPES)]
    images, instances, captions, questions, truth = [], [], [], [], {}
    for i in range(size):
        scene = draw_scene(rng)
        image_id, name = i + 1, f"shapes_val_{i:06d}.png"
        render(scene).save(base / IMAGE_DIR / name)
        images.append({"id": image_id, "file_name": name})
        for o in scene.objects:
            instances.append({"id": len(instances) + 1, "image_id": image_id,
                              "category_id": SHAPES.index(o.shape) + 1})
        for text in language.reference_captions(scene, rng):
            captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": text})
        questions.append({"question_id": image_id, "image": name, "text": PROMPT})
        truth[name] = scene.to_json()
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    (base / INSTANCES).write_text(json.dumps({"images": images, "annotations": instances,
                                              "categories": categories}))
    (base / CAPTIONS).write_text(json.dumps({"images": images, "annotations": captions}))
    write_jsonl(base / QUESTION_FILE, questions)
    (base / "ground_truth.json").write_text(json.dumps(truth, indent=1))
