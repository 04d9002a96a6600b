"""SIMA's self-critic in the synthetic world: the critic's prompt and reply formats, and conversations
that teach the tiny base model to follow them (REFERENCE §1.3).

`matrix.methods.sima` asks the base model with `critic_prompt` and parses the verdict; the bootstrap mix's
`critic` task (`matrix.models.bootstrap_mix`) teaches the format with `critic_qa`: one definition for
both sides, and the world imports no method.
"""
from __future__ import annotations

import random

from matrix.world import language
from matrix.world.datasets import DETAIL_PROMPTS, TEXTCAPS_PROMPT, detailed_description
from matrix.world.scene import COLOURS, SHAPES, Obj, Scene

CRITERIA = (
    ("Objects", "are the objects it mentions really in the image, and does it miss none that matter?"),
    ("Relations", "are the positions of objects in the image and relative to each other right?"),
    ("Attributes", "are colours, shapes and counts right?"),
)


def critic_prompt(question: str, ground_truth: str, answer1: str, answer2: str) -> str:
    """The self-critic's user text (the image placeholder is added by the model handle)."""
    criteria = " ".join(f"{name}: {what}" for name, what in CRITERIA)
    return (
        "Two answers to a question about this image follow. Judge which one is more accurate, using the "
        f"ground truth. {criteria}\n"
        f"Question: {question}\n"
        f"Ground truth: {ground_truth}\n"
        f"Answer 1: {answer1}\n"
        f"Answer 2: {answer2}\n"
        "End your reply with [[1]] if Answer 1 is better or [[2]] if Answer 2 is better."
    )


def critic_reply(better: int) -> str:
    """The reply the critic is taught: a short justification and the verdict."""
    other = 2 if better == 1 else 1
    return (f"Answer {better} agrees with the ground truth on objects, relations and attributes; "
            f"Answer {other} does not. [[{better}]]")


# ---- teaching the format to the tiny base model --------------------------------------------------------
def _wrong_caption(scene, rng: random.Random) -> str:
    return language.caption(_corrupt(scene, rng))


def _corrupt(scene, rng: random.Random):
    """A copy of `scene` with one object's colour, shape or cell changed (an attribute/relation error)."""
    objs = list(scene.objects)
    i = rng.randrange(len(objs))
    o = objs[i]
    kind = rng.choice(("colour", "shape", "position"))
    if kind == "colour":
        objs[i] = Obj(o.shape, rng.choice([c for c in COLOURS if c != o.colour]), o.row, o.col)
    elif kind == "shape":
        objs[i] = Obj(rng.choice([s for s in SHAPES if s != o.shape]), o.colour, o.row, o.col)
    else:
        taken = {(x.row, x.col) for x in objs}
        free = [(r, c) for r in range(3) for c in range(3) if (r, c) not in taken]
        if not free:
            objs[i] = Obj(o.shape, rng.choice([c for c in COLOURS if c != o.colour]), o.row, o.col)
        else:
            r, c = rng.choice(free)
            objs[i] = Obj(o.shape, o.colour, r, c)
    return Scene(objs)


def _short_pair(scene, rng: random.Random) -> tuple[str, str, str]:
    """(question, truth, a wrong answer of the same type) for a short-answer question."""
    o = rng.choice(scene.objects)
    kind = rng.choice(("colour", "shape", "count", "existence"))
    if kind == "colour":
        return language.colour_question(o), o.colour, rng.choice([c for c in COLOURS if c != o.colour])
    if kind == "shape":
        return language.shape_question(o), o.shape, rng.choice([s for s in SHAPES if s != o.shape])
    if kind == "count":
        n = scene.count(o.shape)
        return language.count_question(o.shape), str(n), str(rng.choice([k for k in range(4) if k != n]))
    present = rng.random() < 0.5
    shape = o.shape if present else language.absent_shape(scene, rng)
    truth = language.yes_no(present)
    return language.existence_question(shape), truth, language.yes_no(not present)


def critic_examples(scene_records, rng: random.Random) -> list[list[dict]]:
    """One critic conversation per scene: LLaVA JSON turns `[human, gpt]` for the bootstrap mix.

    `scene_records`: `Scene` objects, scene JSON dicts (`Scene.to_json()`), or dicts holding one under
    "scene". Each conversation asks about the scene (a short-answer question or a caption request),
    gives the ground truth, one answer equal to it and one wrong in an object, relation or attribute,
    in random order, and the reply ends with the verdict naming the right one.
    """
    out: list[list[dict]] = []
    for rec in scene_records:
        scene = rec
        if isinstance(rec, dict):
            raw = rec.get("scene", rec)
            scene = Scene([Obj(o["shape"], o["colour"], o["row"], o["col"]) for o in raw["objects"]])
        question, answer = critic_qa(scene, rng)
        out.append([{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}])
    return out


def critic_qa(scene, rng: random.Random) -> tuple[str, str]:
    """One critic (prompt, reply) about `scene`, the shape of a bootstrap-mix task. Half ask about a
    short-answer question, half about a caption (TextCaps prompt) or a detailed description."""
    roll = rng.random()
    if roll < 0.25:
        question, truth, wrong = TEXTCAPS_PROMPT, language.caption(scene), _wrong_caption(scene, rng)
    elif roll < 0.5:
        question, truth = rng.choice(DETAIL_PROMPTS), detailed_description(scene)
        wrong = detailed_description(_corrupt(scene, rng))
    else:
        question, truth, wrong = _short_pair(scene, rng)
    better = rng.choice((1, 2))
    a1, a2 = (truth, wrong) if better == 1 else (wrong, truth)
    return critic_prompt(question, truth, a1, a2), critic_reply(better)
