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


# ---- yes/no checks of an attribute (MME-style position / colour / count questions) -----------------
YES_NO_SUFFIX = " Please answer yes or no."


def position_check_question(obj: Obj, position: str) -> str:
    """E.g. "Is the red circle at the top left?"; true when `position == obj.position`."""
    return f"Is the {obj.name} at the {position}?"


def colour_check_question(obj: Obj, colour: str) -> str:
    """E.g. "Is the circle at the top left red?"; true when `colour == obj.colour`."""
    return f"Is the {obj.shape} at the {obj.position} {colour}?"


def count_check_question(shape: str, n: int) -> str:
    """E.g. "Are there exactly two circles in the image?"; true when the scene holds `n` of `shape`."""
    if n == 1:
        return f"Is there exactly one {shape} in the image?"
    return f"Are there exactly {NUMBER_WORDS[n]} {plural(shape, n)} in the image?"


# ---- caption requests -----------------------------------------------------------------------------
# TextCaps' LLaVA prompt, and the "describe in detail" prompts of CHAIR/SHR-style evaluations.
CAPTION_PROMPTS = (
    "Provide a one-sentence caption for the provided image.",
    "Describe this image briefly.",
    "Describe this image in detail.",
    "Please describe this image in detail.",
)
