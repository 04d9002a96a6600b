"""Procedurally drawn scenes with exact ground truth: the images of the synthetic world.

A scene is a 3x3 grid of cells holding 1-3 coloured shapes. Everything a benchmark or an
alignment dataset asks about a scene (which objects exist, their colours, counts, positions)
is read from the `Scene` object, never from the pixels, so ground truth is exact by construction.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 50, 170),
    "orange": (240, 130, 20),
}
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
GRID = 3
# Every object of the world by its name (`Obj.name`, "red circle"): the object categories of the
# hallucination twins (POPE, CHAIR), shapes first, then colours.
OBJECTS = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)
# Objects per scene in the hallucination twins: COCO's images, which POPE and CHAIR ask about, are
# crowded (POPE keeps those with at least 3 objects), and a model trained on 1-3 objects makes no
# mistakes on scenes of as many.
CROWDED = (3, 6)


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    row: int
    col: int

    @property
    def position(self) -> str:
        """A position phrase, e.g. "top left"; the centre cell is "center"."""
        if self.row == 1 and self.col == 1:
            return "center"
        return f"{ROWS[self.row]} {COLS[self.col]}"

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    objects: list[Obj]
    background: tuple[int, int, int] = (245, 245, 245)
    jitter: list[tuple[int, int, int]] = field(default_factory=list)

    def shapes(self) -> set[str]:
        return {o.shape for o in self.objects}

    def has(self, shape: str, colour: str | None = None) -> bool:
        return any(o.shape == shape and (colour is None or o.colour == colour) for o in self.objects)

    def count(self, shape: str) -> int:
        return sum(o.shape == shape for o in self.objects)

    def to_json(self) -> dict:
        return {
            "objects": [
                {"shape": o.shape, "colour": o.colour, "row": o.row, "col": o.col, "position": o.position}
                for o in self.objects
            ]
        }


def draw_scene(rng: random.Random, min_objects: int = 1, max_objects: int = 3) -> Scene:
    """Draw a random scene: distinct cells, shapes may repeat (so counts above one occur)."""
    n = rng.randint(min_objects, max_objects)
    cells = rng.sample([(r, c) for r in range(GRID) for c in range(GRID)], n)
    objects = []
    for r, c in cells:
        objects.append(Obj(rng.choice(SHAPES), rng.choice(list(COLOURS)), r, c))
    bg = tuple(rng.randint(225, 255) for _ in range(3))
    jitter = [tuple(rng.randint(-20, 20) for _ in range(3)) for _ in objects]
    return Scene(objects=objects, background=bg, jitter=jitter)  # type: ignore[arg-type]


def _polygon(shape: str, x0: float, y0: float, s: float) -> list[tuple[float, float]] | None:
    cx, cy, h = x0 + s / 2, y0 + s / 2, s / 2
    if shape == "triangle":
        return [(cx, y0), (x0 + s, y0 + s), (x0, y0 + s)]
    if shape == "diamond":
        return [(cx, y0), (x0 + s, cy), (cx, y0 + s), (x0, cy)]
    if shape == "star":
        import math

        pts = []
        for i in range(10):
            rad = h if i % 2 == 0 else h * 0.45
            ang = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
        return pts
    if shape == "cross":
        t = s / 3
        return [
            (x0 + t, y0), (x0 + 2 * t, y0), (x0 + 2 * t, y0 + t), (x0 + s, y0 + t), (x0 + s, y0 + 2 * t),
            (x0 + 2 * t, y0 + 2 * t), (x0 + 2 * t, y0 + s), (x0 + t, y0 + s), (x0 + t, y0 + 2 * t),
            (x0, y0 + 2 * t), (x0, y0 + t), (x0 + t, y0 + t),
        ]
    return None


def render(scene: Scene, size: int = 48) -> Image.Image:
    """Render a scene to an RGB image of `size` x `size` pixels (one grid cell per `size/3`)."""
    img = Image.new("RGB", (size, size), scene.background)
    draw = ImageDraw.Draw(img)
    cell = size / GRID
    pad = cell * 0.12
    for i, o in enumerate(scene.objects):
        base = COLOURS[o.colour]
        jit = scene.jitter[i] if i < len(scene.jitter) else (0, 0, 0)
        colour = tuple(max(0, min(255, b + j)) for b, j in zip(base, jit))
        x0, y0, s = o.col * cell + pad, o.row * cell + pad, cell - 2 * pad
        poly = _polygon(o.shape, x0, y0, s)
        if o.shape == "circle":
            draw.ellipse([x0, y0, x0 + s, y0 + s], fill=colour)
        elif o.shape == "square":
            draw.rectangle([x0, y0, x0 + s, y0 + s], fill=colour)
        else:
            draw.polygon(poly, fill=colour)
    return img
