"""SHR against the scripted loopback judge: sentence splitting, judgement parsing, the ratio by hand,
replies without "Judgement" asked again then given up on and counted, errors propagate, the cache."""
import json
import re

import pytest
from tests.judge_server import JudgeServer, error

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.judge import JudgeError
from matrix.benchmarks.shr import SHR, TEMPLATE, parse_judgement, region_text, sentences
from matrix.world import language
from matrix.world.benchmarks import synthesize_benchmark
from matrix.world.scene import Obj


pytestmark = pytest.mark.usefixtures("judge_env")  # conftest: a test key, never a real one


# The expected values below are what HA-DPO's shr_utils.py (get_model_cap, post_process_no_revise,
# get_metric at opendatalab/HA-DPO abdc44b) gives on the same input: official results, its rules run
# by hand; the comments name the rule.
def test_sentences_split_at_periods_drop_repeats_and_contained_ones():
    text = "A red circle. A blue square.  A red circle. . The end"
    assert sentences(text) == ["A red circle", "A blue square", "The end"]
    assert sentences("") == [] and sentences(" . ") == []
    # "red circle" is inside an earlier sentence, so it goes too (get_model_cap: `sentence in s`)
    assert sentences("A red circle is big. red circle. A circle is big") == ["A red circle is big", "A circle is big"]


@pytest.mark.parametrize("reply,n,labels", [
    ("Judgement:\n1. correct: a\n2. hallucination: b", 2, ["correct", "hallucination"]),
    ("Judgement:\n1. hallucination: not correct", 1, ["hallucination"]),   # the text before ":" only
    ("Judgement:\n\n1: Correct\n\n2. cannot judge: mood", 2, ["correct", "cannot judge"]),  # blank lines go
    ("Judgement:\n1.correct: reason", 1, ["reason"]),           # the first word, "1.correct:", is dropped
    ("Judgement:\n1. Correct - fine", 1, ["correct - fine"]),   # no ":": all of it, not a label
    ("Judgement: 1. correct\n2. correct", 2, [None, None]),     # the first label sits on the marker line
    ("Judgement:\n1. correct: a\n2. correct: b\nOverall good.", 2, [None, None]),  # 3 lines for 2
    ("Judgement: below\n1. correct\nJudgement:\n1. hallucination", 1, [None]),    # the first marker counts
    ("JUDGEMENT:\n1. correct", 1, None),                         # case-sensitive: asked again
    ("Judgement\n1. correct", 1, None),                          # no "Judgement:" (HA-DPO: IndexError)
    ("1. correct", 1, None),
])
def test_parse_judgement(reply, n, labels):
    assert parse_judgement(reply, n) == labels


ANSWERS = [
    "A red circle is at the top. A square is in the middle. A red circle is at the top. The sky is calm.",
    "There are two stars. One star is green. two stars",
    "A triangle.",
    "",
    "A circle. A star.",
]
SCRIPT = [
    # first round: samples 0, 1, 2, 4 (the empty answer is not sent)
    "Reasons.\nJudgement:\n1. correct: fine\n2. hallucination: no square\n3. cannot judge: mood",
    "I think both are fine.",                                    # sample 1: no "Judgement": asked again
    "judgement: 1. correct",                                     # sample 2: lowercase: asked again
    "Judgement:\n1. correct: yes\n2. correct: yes\nOverall the description is good.",  # 3 lines for 2
    # second round: samples 1, 2
    "Judgement:\n1. hallucination: only one star\n2. Correct - it is green",
    "no",
    "no", "no", "no",                                            # sample 2, rounds 3-5: given up
]


def _samples():
    return [Sample(str(i), None, "Describe this image in detail.", {"regions": f"regions {i}\n", "facts": f"facts {i}\n"})
            for i in range(len(ANSWERS))]


def test_ratio_by_hand(make_judge):
    with JudgeServer(list(SCRIPT), default=lambda body: "no") as server:
        judge = make_judge(server)
        scored = SHR().score(_samples(), ANSWERS, judge=judge)
        requests = [r.body for r in server.chat_requests]
        # A second identical run: the 3 replies with a "Judgement:" line are cached (samples 0 and 3, and
        # sample 1's second attempt); the 6 without are asked again (sample 1's first, sample 2's five).
        again = SHR().score(_samples(), ANSWERS, judge=judge)
        assert len(requests) == 9 and len(server.chat_requests) == 9 + 6
    assert again.metrics == scored.metrics and judge.usage()["cached_hits"] == 3
    rows, m = scored.per_sample, scored.metrics
    # sample 0: 3 sentences (the repeat dropped): correct, hallucination, cannot judge -> 1 of 3
    # sample 1: 2 sentences ("two stars" is inside the first): hallucination, "correct - it is green"
    #   (no label) -> 1 of 1; sample 2: five replies without "Judgement" -> unparsed; sample 3: none;
    # sample 4: 3 label lines for 2 sentences -> both unlabelled (HA-DPO drops the image's labels)
    assert [r["labels"] for r in rows] == [["correct", "hallucination", "cannot judge"],
                                           ["hallucination", "correct - it is green"], [None], [], [None, None]]
    # HA-DPO hal_sents_ratio = (1 + 1) / (3 + 1) = 0.5 -> 50; sentences 8, unlabelled 4, per image 8/5, 2/5
    assert m["shr"] == pytest.approx(50.0)
    assert (m["hallucinated_sentences"], m["judged_sentences"], m["sentences"], m["unlabelled"]) == (2, 4, 8, 4)
    assert m["unparsed"] == 1.0 and rows[2]["unparsed"] and not rows[3]["unparsed"] and m["skipped"] == 0
    assert m["sentences_per_image"] == pytest.approx(1.6) and m["hal_sentences_per_image"] == pytest.approx(0.4)
    # gpt_utils.py's decoding: temperature 0.7, max_tokens 800, stop "###", for every attempt
    assert all((r["temperature"], r["max_tokens"], r["stop"]) == (0.7, 800, ["###"]) for r in requests)
    assert requests[0]["messages"][0]["content"] == TEMPLATE.format(
        "regions 0\n", "facts 0\n", "1. A red circle is at the top\n2. A square is in the middle\n3. The sky is calm\n")
    assert len(rows[2]["judge_replies"]) == 5


def test_region_and_fact_text_as_ha_dpo_writes_them():
    image = {"width": 800, "height": 600}
    regions = [{"x": 100, "y": 150, "width": 200, "height": 300, "phrase": "a red car"},
               {"x": 0, "y": 0, "width": 1, "height": 1, "phrase": ""}]      # no phrase: left out
    # get_desc: [x/w, y/h, (x+w)/w, (y+h)/h] with '%.2f', then ": phrase\n"
    assert region_text(image, regions) == "[0.12, 0.25, 0.38, 0.75]: a red car\n"


def test_a_long_prompt_is_skipped_as_ha_dpo_does(make_judge):
    samples = _samples()[2:3]
    samples[0].meta["regions"] = "x" * 15001
    with JudgeServer([]) as server:
        scored = SHR().score(samples, ANSWERS[2:3], judge=make_judge(server))
        assert server.chat_requests == []
    assert scored.metrics["skipped"] == 1 and scored.metrics["sentences"] == 0 and scored.metrics["unparsed"] == 0


def test_a_judge_error_propagates(make_judge):
    with JudgeServer([error(503, "overloaded", retry_after_ms=None)]) as server:
        with pytest.raises(JudgeError, match="HTTP 503"):
            SHR().score(_samples(), ANSWERS, judge=make_judge(server))
    with pytest.raises(ValueError, match="judge"):
        SHR().score(_samples(), ANSWERS)


def test_a_template_file_replaces_ours(make_judge, tmp_path):
    path = tmp_path / "shr.txt"
    path.write_text("R={} F={} S={}")
    with JudgeServer(["Judgement:\n1. hallucination"]) as server:
        scored = SHR(template_path=path).score(_samples()[2:3], ANSWERS[2:3], judge=make_judge(server))
        assert server.chat_requests[0].body["messages"][0]["content"] == "R=regions 2\n F=facts 2\n S=1. A triangle\n"
    assert scored.metrics["shr"] == 100.0


def _judge_by_regions(body):
    content = body["messages"][0]["content"]
    regions = content.split("Regions:\n", 1)[1].split("\nFacts:", 1)[0].lower()
    block = content.split("Sentences:\n", 1)[1].split("\n\n", 1)[0]
    lines = ["Judgement:"]
    for line in block.splitlines():
        k, text = re.match(r"(\d+)\. (.*)$", line).groups()
        lines.append(f"{k}. {'correct' if text.lower() in regions else 'hallucination'}: by the regions")
    return "\n".join(lines)


def test_synthetic_round_trip(tmp_path, make_judge):
    bench = BENCHMARKS.get("shr")()
    synthesize_benchmark(bench.id, tmp_path, size=5, seed=5)
    samples = bench.load(tmp_path)
    assert [s.question for s in samples] == ["Describe this image in detail."] * 5
    assert all(s.image.exists() and "There is" in s.meta["facts"] for s in samples)
    data = {d["image_id"]: d for d in json.loads((tmp_path / "shr/VG/image_data.json").read_text())}
    good = []
    for s in samples:
        objs = [Obj(o["shape"], o["colour"], o["row"], o["col"]) for o in data[s.meta["image_id"]]["scene"]["objects"]]
        good.append(" ".join(language.describe(o).capitalize() + "." for o in objs))
    with JudgeServer(_judge_by_regions) as server:
        judge = make_judge(server, concurrency=4)
        assert bench.score(samples, good, judge=judge).metrics["shr"] == 0.0
        bad = bench.score(samples, [g + " A purple hexagon is at the center." for g in good], judge=judge).metrics
    n = bad["judged_sentences"]
    assert bad["hallucinated_sentences"] == 5 and bad["shr"] == pytest.approx(500 / n)
    assert len(bench.load(tmp_path, limit=2)) == 2
    (tmp_path / "shr/VG/image_data.json").write_text("[]")
    with pytest.raises(BenchmarkFileError, match="no image 1000"):
        bench.load(tmp_path)
