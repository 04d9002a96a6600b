"""How the synthetic world talks about a scene: the questions, answers and captions.

Alignment datasets, benchmark files and the tiny model's bootstrap mix all phrase things through
these functions, so a phrasing change happens in one place and every part of the world agrees.
"""
from __future__ import annotations

import random

from matrix.world.scene import COLOURS, SHAPES, Obj, Scene

SHORT_ANSWER_SUFFIX = "\nAnswer the question using a single word or phrase."
NUMBER_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def plural(shape: str, n: int) -> str:
    if n == 1:
        return shape
    return shape + ("es" if shape.endswith("s") else "s")


def existence_question(shape: str, colour: str | None = None) -> str:
    """POPE-style: "Is there a red circle in the image?"."""
    what = f"{colour} {shape}" if colour else shape
    return f"Is there a {what} in the image?"


def count_question(shape: str) -> str:
    return f"How many {plural(shape, 2)} are there?"


def colour_question(obj: Obj) -> str:
    return f"What color is the {obj.shape} at the {obj.position}?"


def shape_question(obj: Obj) -> str:
    return f"What shape is at the {obj.position}?"


def position_question(obj: Obj) -> str:
    return f"Where is the {obj.name}?"


def yes_no(value: bool) -> str:
    return "Yes" if value else "No"


def describe(obj: Obj) -> str:
    return f"a {obj.name} at the {obj.position}" if obj.position != "center" else f"a {obj.name} in the center"


def caption(scene: Scene) -> str:
    """A short caption naming every object, in reading order (top-left first)."""
    objs = sorted(scene.objects, key=lambda o: (o.row, o.col))
    parts = [describe(o) for o in objs]
    if len(parts) == 1:
        body = parts[0]
    else:
        body = ", ".join(parts[:-1]) + " and " + parts[-1]
    return body[0].upper() + body[1:] + "."


def absent_object(scene: Scene, rng: random.Random, adversarial: bool) -> tuple[str, str]:
    """A (shape, colour) not in the scene; adversarial picks share a colour or shape with a present object."""
    present = {(o.shape, o.colour) for o in scene.objects}
    if adversarial:
        o = rng.choice(scene.objects)
        candidates = [(s, o.colour) for s in SHAPES] + [(o.shape, c) for c in COLOURS]
    else:
        candidates = [(s, c) for s in SHAPES for c in COLOURS]
    candidates = [c for c in candidates if c not in present]
    return rng.choice(candidates)


def absent_shape(scene: Scene, rng: random.Random) -> str:
    return rng.choice([s for s in SHAPES if s not in scene.shapes()])
