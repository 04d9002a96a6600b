"""Held-out accuracies of a model on fresh scenes: how well a base model sees the synthetic world.

A quick check (seconds for a few hundred scenes with batched generation), used to judge the
tiny model's bootstrap; it is not one of the benchmarks. Every question carries the short-answer
suffix, as the benchmark files do; captions are asked with LLaVA's TextCaps prompt.
"""
from __future__ import annotations

import random
import re

from matrix.world import language
from matrix.world.benchmarks import textvqa
from matrix.world.scene import COLOURS, SHAPES, Scene, draw_scene, render

_OBJECT_RE = re.compile(rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")


def _norm(answer: str) -> str:
    return answer.strip().lower().rstrip(".").strip()


def _yes(answer: str) -> bool:
    return _norm(answer).startswith("yes")


def _f1(preds: list[bool], truths: list[bool]) -> float:
    tp = sum(p and t for p, t in zip(preds, truths))
    fp = sum(p and not t for p, t in zip(preds, truths))
    fn = sum(t and not p for p, t in zip(preds, truths))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _mean(xs: list) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _questions(scene: Scene, rng: random.Random) -> list[tuple[str, str, object]]:
    """(metric group, question, ground truth) for one scene."""
    obj = rng.choice(scene.objects)
    out: list[tuple[str, str, object]] = [
        ("existence", language.existence_question(rng.choice(scene.objects).shape), True),
        ("existence", language.existence_question(language.absent_shape(scene, rng)), False),
        ("existence_coloured_random", language.existence_question(obj.shape, obj.colour), True),
        ("existence_coloured_random", language.existence_question(*language.absent_object(scene, rng, False)), False),
        ("existence_coloured_adversarial", language.existence_question(obj.shape, obj.colour), True),
        ("existence_coloured_adversarial", language.existence_question(*language.absent_object(scene, rng, True)), False),
        ("colour", language.colour_question(obj), obj.colour),
        ("shape", language.shape_question(obj), obj.shape),
        ("count", language.count_question(obj.shape), str(scene.count(obj.shape))),
    ]
    names = [o.name for o in scene.objects]
    unique = [o for o in scene.objects if names.count(o.name) == 1]
    if unique:
        where = rng.choice(unique)
        out.append(("position", language.position_question(where), where.position))
    truth = rng.random() < 0.5
    asked = obj.colour if truth else rng.choice([c for c in COLOURS if c != obj.colour])
    out.append(("check", language.colour_check_question(obj, asked), truth))
    return [(g, q + language.SHORT_ANSWER_SUFFIX, t) for g, q, t in out]


def probe(handle, n_scenes: int, seed: int, batch_size: int = 64) -> dict[str, float]:
    """Accuracies on `n_scenes` fresh scenes drawn with `seed`.

    `choice` is a four-option question (colour, shape or count) answered with the option's letter, with
    the share of the most common letter given (a model that always says "B" scores about 0.25 with 1.0 there).
    `existence` is POPE's question ("Is there a circle in the image?", half present, half an absent
    shape) with F1 and yes-ratio; `existence_coloured_*` ask for a coloured shape, the absent ones
    drawn at random or sharing a colour or shape with a present object.
    """
    rng = random.Random(seed)
    scenes = [draw_scene(rng) for _ in range(n_scenes)]
    images = [render(s) for s in scenes]
    items = []  # (group, scene index, question, truth)
    for i, sc in enumerate(scenes):
        items += [(group, i, question, truth) for group, question, truth in _questions(sc, rng)]
    # multiple choice (MMBench's four options, answered with a letter), drawn from a stream of its own so
    # adding it left the other groups' questions as they were
    choice_rng = random.Random(seed + 1)
    for i, sc in enumerate(scenes):
        question, options, right = language.choice_item(sc, choice_rng, 4)
        items.append(("choice", i, language.choice_prompt(question, options), language.OPTION_LETTERS[right]))
    # reading TextVQA's reference OCR token (its words on its covers; the bootstrap copies random strings),
    # and the letter of an option the question names (multiple choice's lookup, without the image)
    extra_rng = random.Random(seed + 2)
    covers = []
    for i in range(n_scenes):
        word = extra_rng.choice(textvqa.WORDS)
        covers.append(textvqa.render_word(word, extra_rng))
        items.append(("ocr", n_scenes + i, textvqa.word_prompt(word) + language.SHORT_ANSWER_SUFFIX, word))
        question, options, right = language.lookup_item(extra_rng, 4)
        items.append(("lookup", i, language.choice_prompt(question, options), language.OPTION_LETTERS[right]))
    images = images + covers
    answers = handle.generate(
        [images[i] for _, i, _, _ in items], [q for _, _, q, _ in items], max_new_tokens=6, batch_size=batch_size
    )
    captions = handle.generate(
        images[:n_scenes], [language.CAPTION_PROMPTS[0]] * n_scenes, max_new_tokens=48, batch_size=batch_size
    )
    by_group: dict[str, list[tuple[str, object]]] = {}
    for (group, _, _, truth), answer in zip(items, answers):
        by_group.setdefault(group, []).append((answer, truth))

    stats: dict[str, float] = {"n_scenes": n_scenes}
    yes_no_groups = ("existence", "existence_coloured_random", "existence_coloured_adversarial", "check")
    for group, pairs in by_group.items():
        if group in yes_no_groups:
            preds, truths = [_yes(a) for a, _ in pairs], [bool(t) for _, t in pairs]
            stats[group] = _mean([p == t for p, t in zip(preds, truths)])
            if group.startswith("existence"):
                stats[f"{group}_f1"] = _f1(preds, truths)
                stats[f"{group}_yes_ratio"] = _mean(preds)
        elif group in ("choice", "lookup"):
            letters = [_norm(a)[:1].upper() for a, _ in pairs]
            stats[group] = _mean([letter == t for letter, (_, t) in zip(letters, pairs)])
            if group == "choice":
                stats["choice_most_common_share"] = max(map(letters.count, "ABCD")) / len(pairs)
        else:
            stats[group] = _mean([_norm(a) == str(t) for a, t in pairs])

    mentioned = hallucinated = recalled = total = exact = 0
    for sc, cap in zip(scenes, captions):
        names = {o.name for o in sc.objects}
        said = {f"{c} {s}" for c, s in _OBJECT_RE.findall(cap.lower())}
        mentioned += len(said)
        hallucinated += len(said - names)
        recalled += len(said & names)
        total += len(names)
        exact += cap.strip() == language.caption(sc)
    stats["caption_precision"] = 1 - hallucinated / mentioned if mentioned else 0.0
    stats["caption_recall"] = recalled / total
    stats["caption_exact"] = exact / n_scenes
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in sorted(stats.items())}
