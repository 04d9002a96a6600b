"""In-domain evaluation (Table 3): IF/accuracy means and ACC10 best/worst by hand through the scripted
loopback judge, unreadable replies left out and counted, the reference rules on hand-worked answers, and
the held-out slice: disjoint from every training subset, refused when the dataset is too small."""
import json

import pytest
from tests.judge_server import JudgeServer

from matrix.benchmarks.base import Sample
from matrix.benchmarks.indomain import TEMPLATE, InDomain, parse_scores
from matrix.benchmarks.reference_judge import grade_indomain

pytestmark = pytest.mark.usefixtures("judge_env")


def _samples(n):
    return [Sample(f"r{i}:0", None, f"question {i}?", {"answer": f"truth {i}"}) for i in range(n)]


def test_means_and_acc10_by_hand(make_judge):
    # 12 replies: accuracy 0..10 then 10 again (IF 10 - accuracy), one unreadable, one out of range.
    accs = list(range(11)) + [10]
    replies = [f"ok\nInstruction following: {10 - a}\nAccuracy: {a}" for a in accs]
    replies += ["Accuracy: 7 (no instruction score)", "Instruction following: 11\nAccuracy: 5"]
    with JudgeServer(list(replies)) as server:
        scored = InDomain().score(_samples(14), [f"a{i}" for i in range(14)], judge=make_judge(server))
        first = server.chat_requests[0].body["messages"][0]["content"]
    m = scored.metrics
    assert first == TEMPLATE.format("question 0?", "truth 0", "a0")
    # 12 read: accuracy sum 0+1+...+10 + 10 = 65 -> 65/12; IF sum = 120 - 65 = 55 -> 55/12
    assert m["accuracy"] == pytest.approx(65 / 12) and m["if_score"] == pytest.approx(55 / 12)
    # best ten: 10, 10, 9, ..., 2 -> (10 + 54) / 10 = 6.4; worst ten: 0..9 -> 4.5
    assert m["acc10_best"] == pytest.approx(6.4) and m["acc10_worst"] == pytest.approx(4.5)
    assert m["unparsed"] == 2.0
    assert [r["unparsed"] for r in scored.per_sample[-2:]] == [True, True]


def test_parse_scores_reads_the_last_lines():
    assert parse_scores("Instruction following: 3\nAccuracy: 4\n...\nInstruction following: 8\nAccuracy: 9") == (8, 9)
    assert parse_scores("accuracy: 9") is None
    assert parse_scores(None) is None


@pytest.mark.parametrize("question, reference, answer, want", [
    # short answer asked: 1 word -> IF 10; "red" found -> 10
    ("What color is the circle?\nAnswer the question using a single word or phrase.", "red", "red", (10, 10)),
    # short answer asked, 6 words -> IF 4; content word found -> 10
    ("What color is the circle?\nAnswer the question using a single word or phrase.", "red",
     "the circle is red i think", (4, 10)),
    # description: words of "a red circle and a blue star" less stop words: red, circle, blue, star;
    # found red, circle -> 2/4 -> 5; ends with "." -> IF 10
    ("Describe the image.", "a red circle and a blue star", "A red circle.", (10, 5)),
    # names a square the reference lacks: 2/4 halved -> 2.5 -> 3 (half up); cut off -> IF 6
    ("Describe the image.", "a red circle and a blue star", "A red circle and a square", (6, 3)),
    ("Describe the image.", "a red circle", "", (0, 0)),
])
def test_reference_rules(question, reference, answer, want):
    assert grade_indomain(question, reference, answer) == want


def _heldout(tmp_path, size, n, after):
    from matrix.world.datasets import synthesize_dataset
    from matrix.runner.kinds.data import DataStage
    from matrix.runner.kinds.subset import SubsetStage
    from matrix.runner.stage import StageInput

    root = tmp_path / "ds"
    root.mkdir(exist_ok=True)
    synthesize_dataset("ocrvqa", root, size, seed=3)
    data = StageInput(root, {"data_file": "data.json", "image_root": "."})
    subsets = []
    for k in (after // 2, after):
        out = tmp_path / f"subset{k}"
        out.mkdir()
        SubsetStage().execute({"n": k, "seed": 0}, {"data": data}, out, None)
        subsets.append(set(json.loads((out / "ids.json").read_text())))
    out = tmp_path / "heldout"
    out.mkdir()
    result = DataStage().execute({"what": "heldout", "id": "indomain", "n": n, "seed": 0, "after": after},
                             {"data": data}, out, None)
    return subsets, out, result


def test_heldout_slice_never_overlaps_a_training_subset(tmp_path):
    subsets, out, result = _heldout(tmp_path, size=40, n=12, after=28)
    samples = InDomain().load(out)
    held = {s.question_id.split(":")[0] for s in samples}
    assert len(held) == 12 == result["questions"]
    assert all(not (held & s) for s in subsets)  # 28 + 12 = 40: every record used once
    assert all(s.image.exists() for s in samples)
    assert all(s.meta["answer"] for s in samples)


def test_a_dataset_too_small_for_both_is_refused(tmp_path):
    with pytest.raises(ValueError, match="too few for a held-out slice of 13 after the largest training subset"):
        _heldout(tmp_path, size=40, n=13, after=28)
