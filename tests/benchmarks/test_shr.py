"""SHR against the scripted loopback judge: sentence splitting, judgement parsing, the ratio by hand,
replies without "Judgement" asked again then given up on and counted, errors propagate, the cache."""
import json
import re

import pytest
from tests.judge_server import JudgeServer, error

from benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from benchmarks.judge import JudgeError
from benchmarks.shr import SHR, TEMPLATE, parse_judgement, sentences
from matrix.world import language
from matrix.world.scene import Obj


pytestmark = pytest.mark.usefixtures("judge_env")  # conftest: a test key, never a real one


def test_sentences_split_at_periods_and_drop_repeats():
    text = "A red circle. A blue square.  A red circle. . The end"
    assert sentences(text) == ["A red circle", "A blue square", "The end"]
    assert sentences("") == [] and sentences(" . ") == []


def test_parse_judgement():
    reply = ("1 is fine: correct. 2 is wrong.\nJudgement:\n1: correct\n2. Hallucination\n"
             "Sentence 3 - cannot judge\n4: incorrect\n5: correct or hallucination\n9: correct")
    assert parse_judgement(reply, 5) == ["correct", "hallucination", "cannot judge", None, None]
    assert parse_judgement("1: correct", 1) is None                       # no "Judgement" line
    assert parse_judgement("JUDGEMENT\n1: correct\n1: hallucination", 1) == [None]  # said twice


ANSWERS = [
    "A red circle is at the top. A square is in the middle. A red circle is at the top. The sky is calm.",
    "There are two stars. One star is green",
    "A triangle.",
    "",
]
SCRIPT = [
    "Reasons.\nJudgement:\n1: correct\n2: hallucination\n3: cannot judge",   # sample 0, temperature 0
    "I think both are fine.",                                                # sample 1: no Judgement
    "no",                                                                    # sample 2: no Judgement
    "Judgement:\n1: hallucination\n2: correct or hallucination",             # sample 1, temperature 0.5
    "no", "no", "no", "no",                                                  # sample 2 at 0.5 .. 2.0
]


def _samples():
    return [Sample(str(i), None, "Describe this image in detail.", {"regions": f"regions {i}", "facts": f"facts {i}"})
            for i in range(len(ANSWERS))]


def test_ratio_by_hand(make_judge):
    with JudgeServer(list(SCRIPT), default=lambda body: "no") as server:
        judge = make_judge(server)
        scored = SHR().score(_samples(), ANSWERS, judge=judge)
        requests = [r.body for r in server.chat_requests]
        # A second identical run: the 2 replies with a Judgement are cached, the 6 without are asked again.
        again = SHR().score(_samples(), ANSWERS, judge=judge)
        assert len(requests) == 8 and len(server.chat_requests) == 8 + 6
    assert again.metrics == scored.metrics and judge.usage()["cached_hits"] == 2
    rows, m = scored.per_sample, scored.metrics
    # sample 0: 3 sentences (the repeat dropped): correct, hallucination, cannot judge -> 1 of 3 judged
    # sample 1: 2 sentences, second reply: hallucination, (two labels: none) -> 1 of 1 judged
    # sample 2: 1 sentence, five replies without "Judgement" -> unparsed, 0 judged; sample 3: no sentence
    assert [r["labels"] for r in rows] == [["correct", "hallucination", "cannot judge"],
                                           ["hallucination", None], [None], []]
    # SHR = (1 + 1) / (3 + 1) = 50; sentences 6, unlabelled 2, per image 6/4 and 2/4
    assert m["shr"] == pytest.approx(50.0)
    assert (m["hallucinated_sentences"], m["judged_sentences"], m["sentences"], m["unlabelled"]) == (2, 4, 6, 2)
    assert m["unparsed"] == 1.0 and rows[2]["unparsed"] and not rows[3]["unparsed"]
    assert m["sentences_per_image"] == 1.5 and m["hal_sentences_per_image"] == 0.5
    # 3 + 2 + 1 + 1 + 1 requests (the empty answer is not sent), temperature raised per round
    assert [r["temperature"] for r in requests] == [0.0] * 3 + [0.5] * 2 + [1.0, 1.5, 2.0]
    assert requests[0]["messages"][0]["content"] == TEMPLATE.format(
        "regions 0", "facts 0", "1. A red circle is at the top.\n2. A square is in the middle.\n3. The sky is calm.")
    assert len(rows[2]["judge_replies"]) == 5


def test_a_judge_error_propagates(make_judge):
    with JudgeServer([error(503, "overloaded", retry_after_ms=None)]) as server:
        with pytest.raises(JudgeError, match="HTTP 503"):
            SHR().score(_samples(), ANSWERS, judge=make_judge(server))
    with pytest.raises(ValueError, match="judge"):
        SHR().score(_samples(), ANSWERS)


def test_a_template_file_replaces_ours(make_judge, tmp_path):
    path = tmp_path / "shr.txt"
    path.write_text("R={} F={} S={}")
    with JudgeServer(["Judgement\n1: hallucination"]) as server:
        scored = SHR(template_path=path).score(_samples()[2:3], ANSWERS[2:3], judge=make_judge(server))
        assert server.chat_requests[0].body["messages"][0]["content"] == "R=regions 2 F=facts 2 S=1. A triangle."
    assert scored.metrics["shr"] == 100.0


def _judge_by_regions(body):
    content = body["messages"][0]["content"]
    regions = content.split("Regions:\n", 1)[1].split("\nFacts:", 1)[0].lower()
    block = content.split("Sentences:\n", 1)[1].split("\n\n", 1)[0]
    lines = ["Judgement:"]
    for line in block.splitlines():
        k, text = re.match(r"(\d+)\. (.*)\.$", line).groups()
        lines.append(f"{k}: {'correct' if text.lower() in regions else 'hallucination'}")
    return "\n".join(lines)


def test_synthetic_round_trip(tmp_path, make_judge):
    bench = BENCHMARKS.get("shr")()
    bench.synthesize(tmp_path, size=5, seed=5)
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
