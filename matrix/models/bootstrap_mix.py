"""The tiny model's bootstrap data: tasks that ask about a scene, mixed into LLaVA-JSON conversations.

A task is one function `(scene, rng) -> QA | None` registered under a name with `@task`; the recipe's
`mix` gives each task a weight. Adding what the base model must know (e.g. a self-critic verdict)
is adding one task function and one weight. Every phrasing comes from `matrix.world.language`, so
the bootstrap speaks exactly like the benchmarks and alignment datasets built from the same world.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from matrix.models.conversation import IMAGE_PLACEHOLDER, get_template
from matrix.world import language
from matrix.world.critic import critic_qa
from matrix.world.scene import COLOURS, COLS, GRID, ROWS, SHAPES, Obj, Scene, draw_scene

POSITIONS = tuple(Obj("circle", "red", r, c).position for r in range(GRID) for c in range(GRID))
MAX_COUNT = 3


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    short: bool = True  # a one-word answer: the short-answer suffix may follow the question
    yes_no: bool = False  # a yes/no question: "Please answer yes or no." may follow instead


Task = Callable[[Scene, random.Random], "QA | None"]
TASKS: dict[str, Task] = {}


def task(name: str) -> Callable[[Task], Task]:
    def register(fn: Task) -> Task:
        TASKS[name] = fn
        return fn

    return register


def _unique_named(scene: Scene) -> list[Obj]:
    """Objects whose "colour shape" name occurs once, so "the red circle" refers to one object."""
    names = [o.name for o in scene.objects]
    return [o for o in scene.objects if names.count(o.name) == 1]


def _yes_no(question: str, value: bool) -> QA:
    return QA(question, language.yes_no(value), yes_no=True)


@task("existence")
def existence(scene: Scene, rng: random.Random) -> QA:
    """POPE phrasing, balanced: half present; of the absent half, half share a colour or shape."""
    with_colour = rng.random() < 0.5
    if rng.random() < 0.5:
        obj = rng.choice(scene.objects)
        return _yes_no(language.existence_question(obj.shape, obj.colour if with_colour else None), True)
    if with_colour:
        shape, colour = language.absent_object(scene, rng, adversarial=rng.random() < 0.5)
        return _yes_no(language.existence_question(shape, colour), False)
    return _yes_no(language.existence_question(language.absent_shape(scene, rng)), False)


@task("colour")
def colour(scene: Scene, rng: random.Random) -> QA:
    obj = rng.choice(scene.objects)
    return QA(language.colour_question(obj), obj.colour)


@task("shape")
def shape(scene: Scene, rng: random.Random) -> QA:
    obj = rng.choice(scene.objects)
    return QA(language.shape_question(obj), obj.shape)


def _lookup(scene: Scene, rng: random.Random, attribute: str, values, question, answer_attribute: str,
            absent: float = 0.35) -> QA | None:
    """A question naming an object by one attribute, answered with another; with probability `absent`
    it names a value the scene lacks and the answer is "none"."""
    held = {getattr(o, attribute) for o in scene.objects}
    missing = [v for v in values if v not in held]
    if missing and rng.random() < absent:
        return QA(question(rng.choice(missing)), language.NONE)
    once = [o for o in scene.objects if sum(getattr(p, attribute) == getattr(o, attribute) for p in scene.objects) == 1]
    if not once:
        return None
    obj = rng.choice(once)
    return QA(question(getattr(obj, attribute)), getattr(obj, answer_attribute))


@task("colour_of")
def colour_of(scene: Scene, rng: random.Random) -> QA | None:
    """"What color is the circle?": a lookup by content with a word for an answer, "none" when the scene
    has no circle. Unlike a yes/no question, its answer says what was found, so the model learns to find
    an object by what it is; existence questions are learned on top of that (with only balanced yes/no
    questions about content the model kept one answer whatever the image: DESIGN.md, the tiny model)."""
    return _lookup(scene, rng, "shape", SHAPES, language.colour_of_question, "colour")


@task("shape_of")
def shape_of(scene: Scene, rng: random.Random) -> QA | None:
    """"Which shape is red?": the same lookup by colour, asked of colours the scene holds (the recipe that
    learned existence asked no absent colour; not varied since)."""
    return _lookup(scene, rng, "colour", list(COLOURS), language.shape_of_question, "shape", absent=0.0)


@task("count")
def count(scene: Scene, rng: random.Random) -> QA:
    """Mostly shapes in the scene; one in five asks about an absent shape (answer 0)."""
    name = rng.choice(scene.objects).shape if rng.random() < 0.8 else language.absent_shape(scene, rng)
    return QA(language.count_question(name), str(scene.count(name)))


@task("position")
def position(scene: Scene, rng: random.Random) -> QA | None:
    objs = _unique_named(scene)
    if not objs:
        return None
    obj = rng.choice(objs)
    return QA(language.position_question(obj), obj.position)


@task("check")
def check(scene: Scene, rng: random.Random) -> QA | None:
    """Yes/no about an object's position, colour or a shape's count; half true, half false."""
    truth = rng.random() < 0.5
    kind = rng.choice(("position", "colour", "count"))
    if kind == "count":
        name = rng.choice(scene.objects).shape
        n = scene.count(name)
        asked = n if truth else rng.choice([k for k in range(1, MAX_COUNT + 1) if k != n])
        return _yes_no(language.count_check_question(name, asked), truth)
    if kind == "colour":
        obj = rng.choice(scene.objects)
        asked = obj.colour if truth else rng.choice([c for c in COLOURS if c != obj.colour])
        return _yes_no(language.colour_check_question(obj, asked), truth)
    objs = _unique_named(scene)
    if not objs:
        return None
    obj = rng.choice(objs)
    asked = obj.position if truth else rng.choice([p for p in POSITIONS if p != obj.position])
    return _yes_no(language.position_check_question(obj, asked), truth)


@task("caption")
def caption(scene: Scene, rng: random.Random) -> QA:
    return QA(rng.choice(language.CAPTION_PROMPTS), language.caption(scene), short=False)


@task("choice")
def choice(scene: Scene, rng: random.Random) -> QA:
    """A multiple-choice question (2-5 options) answered with the option's letter, as ScienceQA and
    MMBench ask it."""
    question, options, right = language.choice_item(scene, rng, rng.randint(2, 5))
    return QA(language.choice_prompt(question, options), language.OPTION_LETTERS[right], short=False)


@task("lookup")
def lookup(scene: Scene, rng: random.Random) -> QA:
    """The letter of the option a question names in words ("Which option says red?"): a choice
    question's second half, learnable while the model cannot yet see (2-5 options, as `choice`)."""
    question, options, right = language.lookup_item(rng, rng.randint(2, 5))
    return QA(language.choice_prompt(question, options), language.OPTION_LETTERS[right], short=False)


@task("ocr")
def ocr(scene: Scene, rng: random.Random) -> QA:
    """TextVQA's prompt gives the OCR system's token; LLaVA answers by reading it. Random letter
    strings and numbers (not the benchmark's words) teach the copying, not an answer list."""
    if rng.random() < 0.3:
        token, what = str(rng.randint(0, 99)), "number"
    else:
        token, what = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 5))), "word"
    return QA(f"What {what} is written on the cover?\nReference OCR token: {token}", token)


@task("critic")
def critic(scene: Scene, rng: random.Random) -> QA:
    """SIMA's self-critic: two answers about the scene, the ground truth given; the verdict names the
    right one as [[1]] or [[2]] (`matrix.world.critic`, whose prompt `matrix.methods.sima` asks with)."""
    prompt, reply = critic_qa(scene, rng)
    return QA(prompt, reply, short=False)


def conversation(scene: Scene, rng: random.Random, recipe: dict) -> list[dict]:
    """One LLaVA-JSON conversation about `scene`: caption-only, or several turns drawn from the mix.

    Caption-only conversations teach the model to caption as a first turn (captions otherwise
    tend to come after other questions); questions are not repeated within a conversation.
    """
    if rng.random() < recipe["caption_only"]:
        qas = [TASKS["caption"](scene, rng)]
    else:
        names = list(recipe["mix"])
        weights = [recipe["mix"][n] for n in names]
        n_turns = rng.randint(recipe["min_turns"], recipe["max_turns"])
        qas, asked = [], set()
        for _ in range(4 * n_turns):
            if len(qas) == n_turns:
                break
            qa = TASKS[rng.choices(names, weights)[0]](scene, rng)
            if qa is not None and qa.question not in asked:
                asked.add(qa.question)
                qas.append(qa)
    turns: list[dict] = []
    for i, qa in enumerate(qas):
        question = qa.question
        if qa.short and rng.random() < recipe["short_answer_suffix"]:
            question += language.SHORT_ANSWER_SUFFIX
        elif qa.yes_no and rng.random() < recipe["yes_no_suffix"]:
            question += language.YES_NO_SUFFIX
        if i == 0:
            question = f"{IMAGE_PLACEHOLDER}\n{question}"
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": qa.answer}]
    return turns


def tokenizer_corpus(template_name: str, seed: int, n_captions: int = 2000) -> list[str]:
    """Every phrasing the world uses, enumerated (plus captions of random scenes), for the BPE."""
    rng = random.Random(seed)
    template = get_template(template_name)
    objs = [Obj(s, c, r, k) for s in SHAPES for c in COLOURS for r in range(GRID) for k in range(GRID)]
    questions: list[str] = list(language.CAPTION_PROMPTS)
    for s in SHAPES:
        questions += [language.existence_question(s), language.count_question(s)]
        questions += [language.count_check_question(s, n) for n in range(1, MAX_COUNT + 1)]
        questions += [language.existence_question(s, c) for c in COLOURS]
        questions.append(language.colour_of_question(s))
    questions += [language.shape_of_question(c) for c in COLOURS]
    for o in objs:
        questions += [language.colour_question(o), language.shape_question(o), language.position_question(o)]
        questions += [language.colour_check_question(o, o.colour), language.position_check_question(o, o.position)]
    questions += [q + suffix for q in questions for suffix in (language.SHORT_ANSWER_SUFFIX, language.YES_NO_SUFFIX)]
    answers = ["Yes", "No", language.NONE, *SHAPES, *COLOURS, *POSITIONS, *ROWS, *COLS]
    answers += [str(n) for n in range(10)] + list(language.NUMBER_WORDS.values())
    answers += [language.caption(draw_scene(rng)) for _ in range(n_captions)]
    # Formats later tasks answer in: multiple-choice letters and judge verdicts.
    answers += ["[[1]]", "[[2]]", "A", "B", "C", "D", "Answer with the option's letter from the given choices directly."]
    turns = [template.prompt(f"{IMAGE_PLACEHOLDER}\n{q}") for q in questions]
    return turns + [f" {a}{template.sep2}" for a in answers]
