"""The tiny model's bootstrap: the recipe runs, the shipped checkpoint is its result and sees the world."""
from __future__ import annotations

import json
import random

import pytest

from matrix.models import bootstrap, handle, vision_pretrain
from matrix.models.bootstrap_mix import TASKS, conversation
from matrix.models.conversation import IGNORE_INDEX
from matrix.models.families.tiny import SHIPPED
from matrix.world import language
from matrix.world.scene import Obj, Scene, draw_scene, render

# Floors for the shipped checkpoint on the test's 100 fixed scenes (where it scores existence 1.0 with
# yes-ratio 0.50, colour 0.92, count 0.82, caption precision 0.90), a margin below what it scores there
# and on 300 others (stats.json: existence 1.0, colour 0.94, count 0.85, caption precision 0.88).
COLOUR_FLOOR = 0.8  # chance 1/6
COUNT_FLOOR = 0.7
CAPTION_PRECISION_FLOOR = 0.75
EXISTENCE_FLOOR = 0.9  # chance 0.5: half the questions name a shape the scene holds
OCR_FLOOR = 0.6  # TextVQA's reference OCR token read back (the twin's words; the bootstrap copies random strings)
CHOICE_FLOOR = 0.5  # four options (chance 0.25); the 2-layer models before stop 32 scored 0.22-0.30
LOOKUP_FLOOR = 0.8  # the letter of an option the question names in words
QUICK = {
    "text_layers": 2, "steps": 12, "batch_size": 8, "train_scenes": 64, "eval_scenes": 8, "vision_pretrain_steps": 3,
    "phases": [{"steps": 4, "max_length": 448, "weight_decay": 0.5, "mix": {"choice": 1.0, "critic": 1.0}},
               {"steps": 3, "grow_layers": 1, "train_only_grown": True, "mix": {"choice": 1.0, "ocr": 1.0}}],
}


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("bootstrap") / "model"
    seen: list[tuple[int, float]] = []
    stats = bootstrap.bootstrap(out, QUICK, progress=lambda step, loss: seen.append((step, loss)))
    return out, stats, seen


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "config.json").exists():
        pytest.fail(f"{SHIPPED} holds no checkpoint; rebuild it with `python -m matrix.models.bootstrap {SHIPPED}`")
    return handle.load(SHIPPED)


def _samples(n: int, seed: int) -> tuple[list, list[str]]:
    rng = random.Random(seed)
    images, questions = [], []
    for i in range(n):
        sc = draw_scene(rng)
        obj = rng.choice(sc.objects)
        q = [
            language.existence_question(obj.shape) + language.SHORT_ANSWER_SUFFIX,
            language.colour_question(obj),
            language.CAPTION_PROMPTS[i % len(language.CAPTION_PROMPTS)],
        ][i % 3]
        images.append(render(sc))
        questions.append(q)
    return images, questions


def _batched_equals_single(h: handle.ModelHandle) -> None:
    images, questions = _samples(6, seed=7)
    batched = h.generate(images, questions, max_new_tokens=24, batch_size=6)
    single = [h.generate([im], [q], max_new_tokens=24)[0] for im, q in zip(images, questions)]
    assert batched == single
    assert all(isinstance(a, str) for a in batched)


def test_recipe_runs_end_to_end(quick_model):
    out, stats, seen = quick_model
    assert [s for s, _ in seen] == list(range(1, 12 + 4 + 3 + 1))
    assert stats["steps"] == 19 and stats["final_loss"] > 0
    assert {"existence", "colour", "count", "caption_precision", "choice", "lookup", "ocr"} <= set(stats["heldout"])
    recipe = {**bootstrap.DEFAULT_RECIPE, **QUICK}
    assert json.loads((out / "recipe.json").read_text()) == recipe
    assert handle.read_meta(out) == {"family": "tiny", "template": "plain_v1", "recipe": recipe}
    h = handle.load(out)
    assert h.template.name == "plain_v1" and h.num_image_tokens == 9
    assert h.model.config.text_config.num_hidden_layers == 2 + 1  # the grown layer is saved and loads
    _batched_equals_single(h)


def test_recipe_is_deterministic(quick_model, tmp_path):
    import torch
    from safetensors.torch import load_file

    out, _, seen = quick_model
    again: list[tuple[int, float]] = []
    bootstrap.bootstrap(tmp_path / "again", QUICK, progress=lambda step, loss: again.append((step, loss)))
    assert again == seen
    first, second = load_file(out / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_resuming_from_a_beginning_of_the_recipe_gives_the_same_model(quick_model, tmp_path):
    """Phases after a saved beginning of the recipe (its main phase and first later phase) see the same
    batches as in one run: identical weights. A model built otherwise is refused."""
    import torch
    from safetensors.torch import load_file

    out, _, _ = quick_model
    first_two = tmp_path / "first-two"
    bootstrap.bootstrap(first_two, {**QUICK, "phases": QUICK["phases"][:1]})
    with pytest.raises(ValueError, match="beginning of this recipe"):
        bootstrap.bootstrap(tmp_path / "bad", {**QUICK, "seed": 2}, resume_from=first_two)
    with pytest.raises(ValueError, match="beginning of this recipe"):
        bootstrap.bootstrap(tmp_path / "bad", {**QUICK, "phases": QUICK["phases"][1:]}, resume_from=first_two)
    resumed: list[tuple[int, float]] = []
    stats = bootstrap.bootstrap(tmp_path / "resumed", QUICK, lambda s, l: resumed.append((s, l)), resume_from=first_two)
    assert len(resumed) == 3 and stats["resumed_from"] == str(first_two) and stats["resumed_after_phases"] == 1
    whole, again = load_file(out / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert whole.keys() == again.keys() and all(torch.equal(whole[k], again[k]) for k in whole)
    # the last phase grew a layer and trained it alone: every weight the model had before is unchanged
    before = load_file(first_two / "model.safetensors")
    grown = sorted(set(whole) - set(before))
    assert grown and all(".layers.2." in k for k in grown)
    changed = [k for k in before if not torch.equal(before[k], whole[k])]
    assert len(changed) == 1 and changed[0].endswith("model.norm.weight"), changed  # the final norm, which trains


def test_a_grown_layer_starts_as_the_identity():
    """Appending decoder layers whose output projections are zero changes no logit; then they are ordinary
    layers of the saved model (two more in the config)."""
    import torch

    recipe = {**bootstrap.resolve({}), "text_layers": 2, "vision_pretrain_steps": 0}
    model, _, h = bootstrap.fresh_model(recipe)
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        from matrix.models import tiny

        tiny.grow_text_layers(model, 2, seed=0)
        after = model(input_ids=ids).logits
    assert model.config.text_config.num_hidden_layers == 4 and len(model.model.language_model.layers) == 4
    assert torch.equal(before, after)
    assert model.model.language_model.layers[3].self_attn.layer_idx == 3  # its own slot in the KV cache


def test_recipe_rejects_unknown_keys_and_tasks():
    with pytest.raises(ValueError, match="stepz"):
        bootstrap.resolve({"stepz": 3})
    with pytest.raises(ValueError, match="critique"):
        bootstrap.resolve({"mix": {"critique": 1.0}})
    with pytest.raises(ValueError, match="phase 0"):
        bootstrap.resolve({"phases": [{"seed": 3}]})


def test_only_answer_tokens_are_labelled(shipped):
    rng = random.Random(3)
    recipe = bootstrap.resolve({})
    for _ in range(20):
        conv = conversation(draw_scene(rng), rng, recipe)
        ids, labels = shipped.encode_conversation(conv)
        assert len(ids) == len(labels)
        assert ids.count(shipped.image_token_id) == shipped.num_image_tokens
        labelled = [t for t in labels if t != IGNORE_INDEX]
        assert [t for t, lab in zip(ids, labels) if lab != IGNORE_INDEX] == labelled
        expected = "".join(f" {turn['value']}</s>" for turn in conv if turn["from"] == "gpt")
        assert shipped.tokenizer.decode(labelled) == expected
        # Each labelled run is exactly one answer and its end-of-turn token.
        runs, current = [], []
        for lab in labels:
            if lab != IGNORE_INDEX:
                current.append(lab)
            elif current:
                runs.append(current)
                current = []
        runs += [current] if current else []
        answers = [turn["value"] for turn in conv if turn["from"] == "gpt"]
        assert [shipped.tokenizer.decode(r) for r in runs] == [f" {a}</s>" for a in answers]


def test_mix_teaches_every_task_in_llava_format():
    rng = random.Random(0)
    recipe = bootstrap.resolve({})
    asked: set[str] = set()
    for phase in [recipe, *({**recipe, **p} for p in recipe["phases"])]:
        for _ in range(150):
            sc = draw_scene(rng)
            conv = conversation(sc, rng, phase)
            assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
            assert conv[0]["value"].startswith("<image>\n")
            assert all("<image>" not in t["value"] for t in conv[1:])
            for q, a in zip(conv[::2], conv[1::2]):
                if q["value"].removeprefix("<image>\n").startswith(("Is ", "Are ")):
                    assert a["value"] in ("Yes", "No")
                asked.add(a["value"])
    assert {"Yes", "No", "0", "1", "2", language.NONE} <= asked
    assert set(TASKS) == set(recipe["mix"]).union(*(p["mix"] for p in recipe["phases"]))
    from matrix.methods.sima import parse_critic

    for _ in range(20):
        sc = draw_scene(rng)
        verdict = TASKS["critic"](sc, rng)
        assert parse_critic(verdict.answer) in (1, 2)
        picked = TASKS["choice"](sc, rng)
        assert picked.question.endswith(language.MULTIPLE_CHOICE_SUFFIX)
        assert f"\n{picked.answer}. " in picked.question  # the answer letter names one of the options
        named = TASKS["lookup"](sc, rng)  # "Which option says red?": its letter's line says red
        said = named.question.split("?")[0].removeprefix("Which option says ")
        assert f"\n{named.answer}. {said}\n" in named.question, named.question
    only_caption = conversation(draw_scene(rng), rng, {**recipe, "caption_only": 1.0})
    assert len(only_caption) == 2 and only_caption[0]["value"].split("\n")[1] in language.CAPTION_PROMPTS


def test_shipped_checkpoint_is_the_default_recipe(shipped):
    assert json.loads((SHIPPED / "recipe.json").read_text()) == bootstrap.DEFAULT_RECIPE
    assert handle.read_meta(SHIPPED)["recipe"] == bootstrap.DEFAULT_RECIPE
    stats = json.loads((SHIPPED / "stats.json").read_text())
    assert stats["steps"] == bootstrap.DEFAULT_RECIPE["steps"] + sum(p["steps"] for p in bootstrap.DEFAULT_RECIPE["phases"])
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size < 8 * 2**20


def test_shipped_checkpoint_sees_the_world(shipped):
    """Held-out probe on 100 fresh scenes: it names colours, counts and captions from the image, says
    whether a shape is there (POPE's question) with both answers, not one answer whatever the image, and
    reads back the OCR token the question gives, and answers multiple choice with the right letter, not
    one letter for every question. (The shipped model scores 0.98 / 0.82 / 0.99 / 1.0 / 0.89 / 0.80 / 1.0.)"""
    from matrix.models.probe import probe

    got = probe(shipped, 100, seed=20240601)
    assert got["colour"] >= COLOUR_FLOOR, got  # chance 1/6
    assert got["count"] >= COUNT_FLOOR, got
    assert got["caption_precision"] >= CAPTION_PRECISION_FLOOR, got
    assert got["existence"] >= EXISTENCE_FLOOR, got
    assert 0.35 <= got["existence_yes_ratio"] <= 0.65, got
    assert got["ocr"] >= OCR_FLOOR, got
    assert got["choice"] >= CHOICE_FLOOR and got["choice_most_common_share"] <= 0.5, got
    assert got["lookup"] >= LOOKUP_FLOOR, got


def test_shipped_generation_batched_equals_single(shipped):
    _batched_equals_single(shipped)


def test_lookup_tasks_answer_from_the_scene():
    """'What color is the circle?': asked only of a shape the scene holds once or not at all, answered with
    its colour or "none"; 'Which shape is red?': asked only of a colour the scene holds once."""
    scene = Scene([Obj("circle", "red", 0, 0), Obj("circle", "blue", 1, 1), Obj("star", "red", 2, 2),
                   Obj("cross", "green", 0, 2)])
    rng = random.Random(0)
    seen = {"colour_of": set(), "shape_of": set()}
    for _ in range(300):
        for name in seen:
            qa = TASKS[name](scene, rng)
            if qa is None:
                continue
            seen[name].add((qa.question, qa.answer))
    # worked by hand from the four objects: circles (2) and red (2) are never asked
    assert seen["colour_of"] == {("What color is the star?", "red"), ("What color is the cross?", "green")} | {
        (language.colour_of_question(s), "none") for s in ("square", "triangle", "diamond")}
    assert seen["shape_of"] == {("Which shape is blue?", "circle"), ("Which shape is green?", "cross")}


def test_cell_labels_follow_the_patch_order():
    # red circle top left; blue star bottom row, middle column: cell 2 * 3 + 1 = 7
    scene = Scene([Obj("circle", "red", 0, 0), Obj("star", "blue", 2, 1)])
    assert vision_pretrain.cell_labels(scene) == ([1, 0, 0, 0, 0, 0, 0, 4, 0], [1, 0, 0, 0, 0, 0, 0, 3, 0])


def test_vision_pretraining_learns_each_cell():
    """From guessing (a uniform guess over 7 classes per attribute has loss 2 ln 7 = 3.89, worked by hand;
    the random head starts near or above it) to telling every cell's shape and colour within 40 steps."""
    recipe = {**bootstrap.resolve({}), "vision_pretrain_steps": 40}
    model, _, h = bootstrap.fresh_model(recipe)
    losses = vision_pretrain.pretrain_vision(model, h, recipe)
    assert len(losses) == 40
    assert losses[0] > 3.0, losses[0]
    assert sum(losses[-5:]) / 5 < 0.5, losses[-5:]
    with pytest.raises(ValueError, match="one patch per grid cell"):
        vision_pretrain.pretrain_vision(None, None, {**recipe, "patch_size": 8})


class _TextOracle:
    """A stand-in model that answers from the prompt's text alone: the OCR token, the option a lookup
    names, "B" to any other multiple-choice question and "Yes" to everything else."""

    def generate(self, images, questions, max_new_tokens, batch_size=16):
        assert len(images) == len(questions)
        out = []
        for q in questions:
            lines = q.split("\n")
            if "Reference OCR token: " in q:
                out.append(next(line for line in lines if line.startswith("Reference OCR token: ")).split(": ")[1])
            elif q.startswith("Which option says "):
                named = lines[0].removeprefix("Which option says ").removesuffix("?")
                out.append(next(line[0] for line in lines[1:] if line[1:3] == ". " and line[3:] == named))
            elif "\nA. " in q:
                out.append("B")
            else:
                out.append("Yes")
        return out


def test_probe_scores_reading_and_lookup_from_the_text_and_flags_a_constant_letter():
    """Worked by hand: the oracle reads every OCR token and names every looked-up option (1.0 each);
    it says "B" to every image question with options (the share of its most common letter is 1.0) and
    "Yes" to every existence question, half of which are absent shapes (0.5, yes-ratio 1.0)."""
    from matrix.models.probe import probe

    got = probe(_TextOracle(), 40, seed=3)
    assert got["ocr"] == 1.0 and got["lookup"] == 1.0
    assert got["choice_most_common_share"] == 1.0 and 0.0 < got["choice"] < 0.6
    assert got["existence"] == 0.5 and got["existence_yes_ratio"] == 1.0
