"""SHR's synthetic twin: `size` images in a Visual Genome layout, one region per object (its box the
object's grid cell, its phrase the object described), and facts about the count and the absent shapes,
split across the two fact files. Each `image_data.json` entry also holds its `scene`."""
from __future__ import annotations

import json
import random
from pathlib import Path

from matrix.benchmarks.shr import FACT_FILES, IMAGES_FILE, VG
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.scene import GRID, SHAPES, Scene, draw_scene, render

IMAGE_SIZE = 48


def _facts(scene: Scene) -> list[str]:
    n = len(scene.objects)
    out = [f"There {'is' if n == 1 else 'are'} exactly {language.NUMBER_WORDS[n]} "
           f"{'shape' if n == 1 else 'shapes'} in the image."]
    out += [f"There is no {s} in the image." for s in SHAPES if s not in scene.shapes()]
    return out


@SYNTHETIC_BENCHMARKS.register("shr")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` images; one region per object, facts about counts and absent shapes (split across the
    two fact files)."""
    rng = random.Random(f"shr:{seed}")
    base = Path(root) / "shr"
    (base / VG / "VG_100K").mkdir(parents=True, exist_ok=True)
    images, image_data, regions, facts = [], [], [], ([], [])
    cell = IMAGE_SIZE // GRID
    for i in range(size):
        scene = draw_scene(rng)
        image_id = 1000 + i
        render(scene, size=IMAGE_SIZE).save(base / VG / "VG_100K" / f"{image_id}.png")
        images.append({"image_id": image_id})
        image_data.append({"image_id": image_id, "url": f"https://example.invalid/VG_100K/{image_id}.png",
                           "width": IMAGE_SIZE, "height": IMAGE_SIZE, "scene": scene.to_json()})
        regions.append({"id": image_id, "regions": [
            {"region_id": image_id * 10 + k, "image_id": image_id, "phrase": language.describe(o),
             "x": o.col * cell, "y": o.row * cell, "width": cell, "height": cell}
            for k, o in enumerate(scene.objects)]})
        facts[i % 2].append({str(image_id): _facts(scene)})
    (base / IMAGES_FILE).write_text(json.dumps(images))
    (base / VG / "image_data.json").write_text(json.dumps(image_data))
    (base / VG / "region_descriptions.json").write_text(json.dumps(regions))
    for name, rows in zip(FACT_FILES, facts):
        (base / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
