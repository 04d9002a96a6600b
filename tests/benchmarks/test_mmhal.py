"""MMHal-Bench against the scripted loopback judge: mean rating, hallucination rate and per-type means by
hand, an unreadable reply rated 0 and counted, errors propagate, the cache answers reruns."""
import json
import re

import pytest
from tests.judge_server import JudgeServer, error

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.judge import JudgeError
from matrix.benchmarks.mmhal import QUESTION_TYPES, TEMPLATE, MMHal
from matrix.world.benchmarks import synthesize_benchmark


pytestmark = pytest.mark.usefixtures("judge_env")  # conftest: a test key, never a real one


TYPES = ["attribute", "adversarial", "comparison", "counting", "relation", "attribute"]
REPLIES = [
    "Accurate and well reasoned. Rating: 6",      # 6
    "Claims a colour for a missing shape.\nRating: 2",  # 2
    "rating: 3",                                   # 3: not a hallucination (below 3 is)
    "I think it deserves a good rating.",          # no "rating: N": 0, unparsed
    "Rating: 3 at first, but on reflection Rating: 5",  # two different ratings: 0, unparsed
    "RATING: 5",                                   # 5 (the reply is lowercased first)
]


def _samples():
    return [Sample(str(i), None, f"question {i}?", {"question_type": t, "image_content": ["red circle", "star"],
                                                   "gt_answer": f"gt {i}"})
            for i, t in enumerate(TYPES)]


ANSWERS = [f"response {i}" for i in range(len(TYPES))]


def test_score_rate_and_types_by_hand(make_judge):
    with JudgeServer(list(REPLIES), default=lambda body: "no rating here") as server:
        judge = make_judge(server)
        scored = MMHal().score(_samples(), ANSWERS, judge=judge)
        requests = [r.body for r in server.chat_requests]
        # A second identical run: 4 readable replies cached, the 2 without a rating asked again.
        again = MMHal().score(_samples(), ANSWERS, judge=judge)
        assert len(requests) == 6 and len(server.chat_requests) == 6 + 2
    assert again.metrics == scored.metrics and judge.usage()["cached_hits"] == 4
    m = scored.metrics
    assert [r["rating"] for r in scored.per_sample] == [6, 2, 3, 0, 0, 5]
    # mean = (6 + 2 + 3 + 0 + 0 + 5) / 6 = 16/6 = 2.667; below 3: 2, 0, 0 (not the 3) -> 3/6 = 0.5
    assert m["score"] == pytest.approx(16 / 6)
    assert m["hallucination_rate"] == pytest.approx(0.5)
    # attribute: (6 + 5) / 2 = 5.5; adversarial 2; comparison 3; counting 0; relation 0
    assert m["score_attribute"] == pytest.approx(5.5)
    assert (m["score_adversarial"], m["score_comparison"], m["score_counting"], m["score_relation"]) == (2, 3, 0, 0)
    assert "score_holistic" not in m
    assert m["unparsed"] == 2.0
    assert [r["unparsed"] for r in scored.per_sample] == [False, False, False, True, True, False]
    assert len(requests) == 6 and all(r["temperature"] == 0.0 for r in requests)  # never asked again
    assert requests[0]["messages"][0]["content"] == TEMPLATE.format("red circle, star", "question 0?", "gt 0",
                                                                    "response 0")


def test_a_judge_error_propagates(make_judge):
    with JudgeServer([error(500, "down")]) as server:
        with pytest.raises(JudgeError, match="HTTP 500"):
            MMHal().score(_samples(), ANSWERS, judge=make_judge(server, concurrency=2))
    with pytest.raises(ValueError, match="judge"):
        MMHal().score(_samples(), ANSWERS)


def test_a_template_file_replaces_ours(make_judge, tmp_path):
    path = tmp_path / "mmhal_template.txt"
    path.write_text("C={} Q={} A={} R={}")
    with JudgeServer(["Rating: 1"]) as server:
        scored = MMHal(template_path=path).score(_samples()[:1], ANSWERS[:1], judge=make_judge(server))
        content = server.chat_requests[0].body["messages"][0]["content"]
    assert content == "C=red circle, star Q=question 0? A=gt 0 R=response 0"
    assert scored.metrics["score"] == 1.0 and scored.metrics["hallucination_rate"] == 1.0


def _rate_exact(body):
    content = body["messages"][0]["content"]
    truth = re.search(r"Standard answer: (.*)\nResponse: ", content).group(1)
    response = content.rsplit("Response: ", 1)[1]
    return "Rating: 6" if response == truth else "Rating: 0"


def test_synthetic_round_trip(tmp_path, make_judge):
    bench = BENCHMARKS.get("mmhal")()
    synthesize_benchmark(bench.id, tmp_path, size=16, seed=2)
    samples = bench.load(tmp_path)
    assert [s.meta["question_type"] for s in samples] == [QUESTION_TYPES[i % 8] for i in range(16)]
    assert all(s.image.exists() for s in samples)
    with JudgeServer(_rate_exact) as server:
        judge = make_judge(server, concurrency=4)
        good = bench.score(samples, [s.meta["gt_answer"] for s in samples], judge=judge).metrics
        bad = bench.score(samples, ["I see a dog."] * 16, judge=judge).metrics
    assert good["score"] == 6.0 and good["hallucination_rate"] == 0.0
    assert bad["score"] == 0.0 and bad["hallucination_rate"] == 1.0
    assert all(f"score_{t}" in good for t in QUESTION_TYPES)
    assert len(bench.load(tmp_path, limit=5)) == 5
    rows = json.loads((tmp_path / "mmhal-bench/response_template.json").read_text())
    del rows[3]["gt_answer"]
    (tmp_path / "mmhal-bench/response_template.json").write_text(json.dumps(rows))
    with pytest.raises(BenchmarkFileError, match="entry 3 lacks gt_answer"):
        bench.load(tmp_path)
