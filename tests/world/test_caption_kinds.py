"""TextCaps-like and detail-like synthetic data: every object of the scene described, nothing else, truly."""
import json
import re

import pytest

from matrix.world import language
from matrix.world.datasets import load_dataset, synthesize_dataset
from matrix.world.scene import COLOURS, SHAPES

MENTION = re.compile(r"\b(" + "|".join(COLOURS) + r") (" + "|".join(SHAPES) + r") (?:at the ([a-z]+(?: [a-z]+)?)|in the (center))")


def _mentions(text: str) -> set[tuple[str, str, str]]:
    return {(c, s, p or q) for c, s, p, q in MENTION.findall(text)}


def _truth(scene_json: dict) -> set[tuple[str, str, str]]:
    return {(o["colour"], o["shape"], o["position"]) for o in scene_json["objects"]}


@pytest.mark.parametrize("kind", ["textcaps", "detail"])
def test_caption_kinds_describe_exactly_the_scene(tmp_path, kind):
    synthesize_dataset(kind, tmp_path, 40, seed=2)
    records = load_dataset(tmp_path)
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert len(records) == 40 and set(truth) == {r["id"] for r in records}
    for r in records:
        human, gpt = r["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt" and human["value"].startswith("<image>\n")
        assert human["value"][len("<image>\n"):] in language.CAPTION_PROMPTS
        assert _mentions(gpt["value"]) == _truth(truth[r["id"]]), (gpt["value"], truth[r["id"]])


def test_detail_counts_and_relations_are_true(tmp_path):
    synthesize_dataset("detail", tmp_path, 60, seed=4)
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    relations = 0
    for r in load_dataset(tmp_path):
        text, objs = r["conversations"][1]["value"], truth[r["id"]]["objects"]
        n = len(objs)
        assert f"shows {language.NUMBER_WORDS[n]} object" in text
        for shape in {o["shape"] for o in objs}:
            k = sum(o["shape"] == shape for o in objs)
            assert f"{language.NUMBER_WORDS[k]} {language.plural(shape, k)}" in text
        where = {f'{o["colour"]} {o["shape"]}': (o["row"], o["col"]) for o in objs}
        for a, b in re.findall(r"The (\w+ \w+) is to the left of the (\w+ \w+)", text):
            assert where[a][0] == where[b][0] and where[a][1] < where[b][1]
            relations += 1
        for a, b in re.findall(r"The (\w+ \w+) is above the (\w+ \w+)", text):
            assert where[a][1] == where[b][1] and where[a][0] < where[b][0]
            relations += 1
        assert len(text.split()) > len(r["conversations"][1]["value"].split(".")[0].split())
    assert relations > 5  # relations do occur
