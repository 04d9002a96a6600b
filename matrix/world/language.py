"""How the synthetic world talks about a scene: the questions, answers and captions.

Alignment datasets, benchmark files and the tiny model's bootstrap mix all phrase things through
these functions, so a phrasing change happens in one place and every part of the world agrees.
"""
from __future__ import annotations

import random

# The official prompt texts are the benchmarks' (`matrix.benchmarks.prompts`); the world phrases with them.
from matrix.benchmarks.prompts import (  # noqa: F401  (re-exported: the world's phrasing)
    DETAIL_PROMPT,
    MULTIPLE_CHOICE_SUFFIX,
    MULTIPLE_CHOICE_SUFFIX_CN,
    SHORT_ANSWER_SUFFIX,
    YES_NO_SUFFIX,
)
from matrix.world.scene import COLOURS, SHAPES, Obj, Scene

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


# Lookups by content: the object is named by its shape or its colour, not its cell; "none" answers one
# about a shape or colour the scene lacks.
NONE = "none"


def colour_of_question(shape: str) -> str:
    """E.g. "What color is the circle?" (asked of a shape the scene holds once, or not at all)."""
    return f"What color is the {shape}?"


def shape_of_question(colour: str) -> str:
    """E.g. "Which shape is red?" (asked of a colour the scene holds once, or not at all)."""
    return f"Which shape is {colour}?"


def yes_no(value: bool) -> str:
    return "Yes" if value else "No"


def describe(obj: Obj, name: str | None = None) -> str:
    """E.g. "a red circle at the top left"; `name` replaces the shape's own word (a synonym)."""
    what = f"{obj.colour} {name}" if name else obj.name
    return f"a {what} at the {obj.position}" if obj.position != "center" else f"a {what} in the center"


def caption(scene: Scene, names: dict[str, str] | None = None) -> str:
    """A short caption naming every object, in reading order (top-left first); `names` maps a shape
    to the word used for it (a synonym)."""
    names = names or {}
    objs = sorted(scene.objects, key=lambda o: (o.row, o.col))
    parts = [describe(o, names.get(o.shape)) for o in objs]
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


# ---- multiple-choice questions (ScienceQA-IMG, MMBench, SEED-Bench style) --------------------------
OPTION_LETTERS = "ABCDE"
SHAPES_CN = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形", "cross": "十字形",
             "diamond": "菱形"}
COLOURS_CN = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色"}
POSITIONS_CN = {"top": "上", "middle": "中", "bottom": "下", "left": "左", "center": "中", "right": "右"}


def options_text(options: list[str]) -> str:
    """LLaVA's option lines: "A. red\\nB. blue"."""
    return "\n".join(f"{OPTION_LETTERS[i]}. {o}" for i, o in enumerate(options))


def choice_prompt(question: str, options: list[str]) -> str:
    """A multiple-choice prompt as ScienceQA and MMBench ask it: question, option lines, letter suffix."""
    return f"{question}\n{options_text(options)}{MULTIPLE_CHOICE_SUFFIX}"


def lookup_item(rng: random.Random, k: int) -> tuple[str, list[str], int]:
    """A multiple-choice question whose answer is in its own text ("Which option says red?"): finding
    the letter of a named option, the second half of answering a choice question from an image."""
    pool = rng.choice((list(COLOURS), list(SHAPES), [str(n) for n in range(6)]))
    options = rng.sample(pool, k)
    right = rng.randrange(k)
    return f"Which option says {options[right]}?", options, right


def position_cn(obj: Obj) -> str:
    if obj.position == "center":
        return "正中间"
    row, col = obj.position.split()
    return POSITIONS_CN[col] + POSITIONS_CN[row]  # Chinese names the side first: 左上 = top left


def colour_question_cn(obj: Obj) -> str:
    """E.g. "图中左上的圆形是什么颜色？"."""
    return f"图中{position_cn(obj)}的{SHAPES_CN[obj.shape]}是什么颜色？"


def shape_question_cn(obj: Obj) -> str:
    return f"图中{position_cn(obj)}是什么形状？"


def count_question_cn(shape: str) -> str:
    return f"图中有几个{SHAPES_CN[shape]}？"


def choice_item(scene: Scene, rng: random.Random, k: int, cn: bool = False) -> tuple[str, list[str], int]:
    """A multiple-choice question about `scene` with `k` options (one right, k-1 wrong, shuffled):
    (question, options, index of the right option). Colour, shape or count, from the exact scene."""
    kind = rng.choice(("colour", "shape", "count"))
    obj = rng.choice(scene.objects)
    if kind == "colour":
        names = COLOURS_CN if cn else {c: c for c in COLOURS}
        question = colour_question_cn(obj) if cn else colour_question(obj)
        right, pool = names[obj.colour], [names[c] for c in COLOURS if c != obj.colour]
    elif kind == "shape":
        names = SHAPES_CN if cn else {s: s for s in SHAPES}
        question = shape_question_cn(obj) if cn else shape_question(obj)
        right, pool = names[obj.shape], [names[s] for s in SHAPES if s != obj.shape]
    else:
        question = count_question_cn(obj.shape) if cn else count_question(obj.shape)
        n = scene.count(obj.shape)
        right, pool = str(n), [str(m) for m in range(0, 6) if m != n]
    options = [right] + rng.sample(pool, k - 1)
    rng.shuffle(options)
    return question, options, options.index(right)


# ---- other names for the shapes (CHAIR's synonym table, varied reference captions) -------------------
# Each shape's alternative names, two-word ones included so caption parsing has phrases to merge. With
# a colour before them the two-word ones are three words, which CHAIR never matches (it merges pairs).
SHAPE_SYNONYMS = {
    "circle": ("disc", "disk"),
    "square": (),
    "triangle": (),
    "star": ("five-pointed star", "pentagram"),
    "cross": ("plus sign",),
    "diamond": ("rhombus", "lozenge"),
}


def one_word_synonyms(shape: str) -> list[str]:
    return [w for w in SHAPE_SYNONYMS[shape] if " " not in w]


def count_phrase(shape: str, n: int) -> str:
    """E.g. "two circles", "a square"."""
    if n == 1:
        return f"{'an' if shape[0] in 'aeiou' else 'a'} {shape}"
    return f"{NUMBER_WORDS.get(n, str(n))} {plural(shape, n)}"


def inventory(scene: Scene) -> str:
    """E.g. "The image shows two circles and a square." (shapes in SHAPES order)."""
    parts = []
    for shape in SHAPES:
        n = scene.count(shape)
        if n:
            parts.append(count_phrase(shape, n))
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"The image shows {body}."


def reference_captions(scene: Scene, rng: random.Random, k: int = 5) -> list[str]:
    """`k` true captions of a scene (COCO gives five per image): the plain caption, an inventory (shapes
    without their colours), the caption with one-word synonyms of the shapes, and per-object sentences."""
    out = [caption(scene)]
    while len(out) < k:
        style = len(out) % 3
        if style == 1:
            out.append(inventory(scene))
        elif style == 2:
            # in SHAPES order: a set's order changes with PYTHONHASHSEED, and so would the draws
            names = {s: rng.choice(one_word_synonyms(s)) for s in SHAPES
                     if scene.has(s) and one_word_synonyms(s)}
            out.append(caption(scene, names))
        else:
            o = rng.choice(scene.objects)
            out.append(f"There is {describe(o)} on a light background.")
    return out
