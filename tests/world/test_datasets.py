"""Synthetic alignment data: LLaVA JSON records whose every answer agrees with its scene."""
import json
import random

import pytest
from PIL import Image

from matrix.world import language
from matrix.world.datasets import KINDS, load_dataset, synthesize_dataset
from matrix.world.scene import COLOURS, SHAPES, Obj, Scene

PREFIX = "<image>\n"


def oracle(scene_json: dict) -> dict[str, str]:
    """Every short-answer question the world can ask about a scene -> its true answer, built from the
    ground truth independently of the dataset code."""
    objs = [Obj(o["shape"], o["colour"], o["row"], o["col"]) for o in scene_json["objects"]]
    truth: dict[str, str] = {}
    for shape in SHAPES:
        truth[language.existence_question(shape)] = "Yes" if any(o.shape == shape for o in objs) else "No"
        truth[language.count_question(shape)] = str(sum(o.shape == shape for o in objs))
        for colour in COLOURS:
            present = any(o.shape == shape and o.colour == colour for o in objs)
            truth[language.existence_question(shape, colour)] = "Yes" if present else "No"
    names = [o.name for o in objs]
    for o in objs:
        truth[language.colour_question(o)] = o.colour
        truth[language.shape_question(o)] = o.shape
        if names.count(o.name) == 1:  # "Where is the red circle?" is only answerable if there is one
            truth[language.position_question(o)] = o.position
    return truth


@pytest.fixture(scope="module")
def ocrvqa(tmp_path_factory):
    root = tmp_path_factory.mktemp("ocrvqa")
    synthesize_dataset("ocrvqa", root, 60, seed=5)
    return root, load_dataset(root), json.loads((root / "ground_truth.json").read_text())


def test_records_are_llava_json_with_short_answer_turns(ocrvqa):
    root, records, truth = ocrvqa
    ids = {r["id"] for r in records}
    assert len(records) == len(ids) == 60 and set(truth) == ids
    for r in records:
        assert r["image"] == f"images/{r['id']}.png"
        assert Image.open(root / r["image"]).size == (48, 48)
        conv = r["conversations"]
        assert 1 <= len(conv) // 2 <= 3
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        humans = [t["value"] for t in conv[::2]]
        assert humans[0].startswith(PREFIX) and not any(PREFIX in h for h in humans[1:])
        assert all(h.endswith(language.SHORT_ANSWER_SUFFIX) for h in humans)
        assert len(set(humans)) == len(humans)


def test_every_answer_agrees_with_the_scene(ocrvqa):
    _, records, truth = ocrvqa
    asked = []
    for r in records:
        known = oracle(truth[r["id"]])
        for q, a in zip(r["conversations"][::2], r["conversations"][1::2]):
            question = q["value"].removeprefix(PREFIX).removesuffix(language.SHORT_ANSWER_SUFFIX)
            assert question in known, f"{r['id']}: {question!r} is not a well-posed question about its scene"
            assert a["value"] == known[question], f"{r['id']}: {question!r}"
            asked.append((question, a["value"], truth[r["id"]]))
    answers = {a for _, a, _ in asked}
    # The checks above must have covered every question type, both yes/no answers and count 0.
    assert {"Yes", "No", "0"} <= answers
    positions = {a for a in answers if " " in a or a == "center"}
    assert answers & set(COLOURS) and answers & set(SHAPES) and positions
    # Negatives naming a colour are the adversarial ones: they share a shape or a colour with the scene.
    coloured_no = [(q, scene) for q, a, scene in asked if a == "No" and any(
        q == language.existence_question(s, c) for s in SHAPES for c in COLOURS)]
    assert coloured_no, "no adversarial negative was drawn"
    for q, scene in coloured_no:
        assert any(f" {o['shape']} " in q or f" {o['colour']} " in q for o in scene["objects"]), q


def test_objects_named_twice_are_never_asked_about_by_name():
    # Two red circles: "Where is the red circle?" has no single answer, so it must never be asked.
    scene = Scene([Obj("circle", "red", 0, 0), Obj("circle", "red", 2, 2)])
    rng = random.Random(0)
    asked = {q for _ in range(200) for q, _ in KINDS["ocrvqa"](scene, rng)}
    assert not any(q.startswith("Where is") for q in asked)
    assert any(q.startswith("What color") for q in asked)  # the scene is otherwise asked about


def test_deterministic_per_seed(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        synthesize_dataset("ocrvqa", tmp_path / name, 10, seed=seed)
    a, b, c = (tmp_path / n for n in "abc")
    for f in ("data.json", "ground_truth.json", "images/ocrvqa-1-000003.png"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
    assert (a / "ground_truth.json").read_text() != (c / "ground_truth.json").read_text()


def test_unknown_kind_and_missing_or_bad_file(tmp_path):
    with pytest.raises(ValueError, match="known: detail, ocrvqa, textcaps"):
        synthesize_dataset("nope", tmp_path, 1, 0)
    with pytest.raises(FileNotFoundError, match=r"data\.json not found"):
        load_dataset(tmp_path)
    (tmp_path / "data.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"data\.json: not valid JSON"):
        load_dataset(tmp_path)
