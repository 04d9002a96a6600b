"""Synthetic alignment data: LLaVA JSON records whose answers agree with the scenes."""
import json

import pytest

from matrix.world.datasets import load_dataset, synthesize_dataset
from matrix.world.language import SHORT_ANSWER_SUFFIX, count_question
from matrix.world.scene import SHAPES


def test_ocrvqa_records_match_their_scenes(tmp_path):
    synthesize_dataset("ocrvqa", tmp_path, 40, seed=5)
    records = load_dataset(tmp_path)
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert len(records) == 40 and len({r["id"] for r in records}) == 40
    counted = []
    for r in records:
        conv = r["conversations"]
        assert conv[0]["value"].startswith("<image>\n") and (tmp_path / r["image"]).exists()
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        scene = truth[r["id"]]["objects"]
        for q, a in zip(conv[::2], conv[1::2]):
            assert q["value"].endswith(SHORT_ANSWER_SUFFIX)
            for shape in SHAPES:
                if q["value"].startswith(("<image>\n" if q is conv[0] else "") + count_question(shape)):
                    assert a["value"] == str(sum(o["shape"] == shape for o in scene))
                    counted.append(shape)
    assert counted, "no count question was drawn: the check above tested nothing"


def test_deterministic_per_seed(tmp_path):
    synthesize_dataset("ocrvqa", tmp_path / "a", 10, seed=1)
    synthesize_dataset("ocrvqa", tmp_path / "b", 10, seed=1)
    assert load_dataset(tmp_path / "a") == load_dataset(tmp_path / "b")


def test_unknown_kind_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="ocrvqa"):
        synthesize_dataset("nope", tmp_path, 1, 0)
    with pytest.raises(FileNotFoundError, match="data.json"):
        load_dataset(tmp_path)
