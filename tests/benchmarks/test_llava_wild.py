"""LLaVA-Bench (in-the-wild) against the scripted loopback judge: the relative score by hand, LLaVA's
(-1, -1) for an unreadable reply, errors propagate, the cache answers reruns, a rule file replaces ours."""
import json
import re

import pytest
from tests.judge_server import JudgeServer, error

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.judge import JudgeError
from matrix.benchmarks.llava_wild import RULES, SYSTEM, LlavaWild, parse_pair
from matrix.world.benchmarks import synthesize_benchmark


pytestmark = pytest.mark.usefixtures("judge_env")  # conftest: a test key, never a real one


@pytest.mark.parametrize("text,pair", [
    ("8 6\nAssistant 1 is more precise.", (8.0, 6.0)),
    ("7,7", (7.0, 7.0)),               # commas become spaces
    # LLaVA's parse_score (eval_gpt_review_bench.py) gives [-1, -1] for each of these (official
    # result, from running its rule): it splits on single spaces, so empty or joined pieces spoil the pair
    ("7, 7", None), ("8  9", None), (" 8 9", None), ("8 9 ", None), ("8\t9", None),
    ("9.5 3\n", (9.5, 3.0)),
    ("Scores: 8 6", None),             # three words on the first line
    ("\n8 6", None),                   # the first line is empty
    ("eight six", None),
    ("", None),
])
def test_parse_pair(text, pair):
    assert parse_pair(text) == pair


CATS = ["conv", "conv", "detail", "complex"]
REPLIES = ["8 6\nreasons", "7,7\nreasons", "9 3\nthe second invents a triangle", "I cannot compare these."]


def _samples():
    return [Sample(str(i), None, f"question {i}?", {"category": c, "reference": f"reference {i}",
                                                   "context": f"context {i}"})
            for i, c in enumerate(CATS)]


ANSWERS = [f"answer {i}" for i in range(4)]


def test_relative_scores_by_hand(make_judge):
    with JudgeServer(list(REPLIES), default=lambda body: REPLIES[-1]) as server:
        judge = make_judge(server)
        scored = LlavaWild().score(_samples(), ANSWERS, judge=judge)
        requests = [r.body for r in server.chat_requests]
        # A second identical run: 3 readable replies cached, the unreadable one asked again.
        again = LlavaWild().score(_samples(), ANSWERS, judge=judge)
        assert len(requests) == 4 and len(server.chat_requests) == 4 + 1
    assert again.metrics == scored.metrics and judge.usage()["cached_hits"] == 3
    m = scored.metrics
    # pairs (ref, model): (8, 6), (7, 7), (9, 3), unreadable -> LLaVA's (-1, -1), averaged in
    # all: model mean (6 + 7 + 3 - 1)/4 = 3.75, ref mean (8 + 7 + 9 - 1)/4 = 5.75 -> 3.75/5.75 = 65.22
    assert m["relative"] == pytest.approx(100 * 15 / 23)
    assert m["relative_conv"] == pytest.approx(100 * 13 / 15)      # (6 + 7) / (8 + 7)
    assert m["relative_detail"] == pytest.approx(100 * 3 / 9)
    assert m["relative_complex"] == pytest.approx(100.0)             # (-1) / (-1), as LLaVA computes it
    assert m["model_score"] == pytest.approx(37.5) and m["reference_score"] == pytest.approx(57.5)
    assert m["unparsed"] == 1.0 and scored.per_sample[3]["unparsed"]
    assert len(requests) == 4
    assert all(r["temperature"] == 0.2 and r["max_tokens"] == 1024 for r in requests)
    system, user = requests[2]["messages"]
    assert system == {"role": "system", "content": SYSTEM}
    content = user["content"]
    assert content.index("reference 2") < content.index("answer 2")   # the reference is assistant 1
    assert "context 2" in content and RULES["llava_bench_detail"]["prompt"] in content


def test_a_judge_error_propagates(make_judge):
    with JudgeServer([error(401, "bad key")]) as server:
        with pytest.raises(JudgeError, match="HTTP 401"):
            LlavaWild().score(_samples(), ANSWERS, judge=make_judge(server))
    with pytest.raises(ValueError, match="judge"):
        LlavaWild().score(_samples(), ANSWERS)


def test_a_rule_file_is_sent_in_llavas_layout(make_judge, tmp_path):
    path = tmp_path / "rule.json"
    path.write_text(json.dumps({"llava_bench_conv": {"role": "Helper", "prompt": "OFFICIAL CONV RULE"}}))
    with JudgeServer(["6 9"]) as server:
        scored = LlavaWild(template_path=path).score(_samples()[:1], ANSWERS[:1], judge=make_judge(server))
        body = server.chat_requests[0].body
        with pytest.raises(BenchmarkFileError, match="no rule 'llava_bench_detail'"):
            LlavaWild(template_path=path).score(_samples()[2:3], ANSWERS[2:3], judge=make_judge(server))
    # eval_gpt_review_bench.py's messages, written out from its f-strings (LLaVA@32cebc38)
    assert body["messages"] == [
        {"role": "system", "content": "You are a helpful and precise assistant for checking the quality of the answer."},
        {"role": "user", "content": "[Context]\ncontext 0\n\n[Question]\nquestion 0?\n\n"
                                    "[Helper 1]\nreference 0\n\n[End of Helper 1]\n\n"
                                    "[Helper 2]\nanswer 0\n\n[End of Helper 2]\n\n"
                                    "[System]\nOFFICIAL CONV RULE\n\n"}]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 1024
    assert scored.metrics["relative"] == pytest.approx(150.0)


def test_relative_rounds_the_means_as_summarize_gpt_review():
    # summarize_gpt_review.py: stats = [round(mean, 3) ...]; relative = stats[1] / stats[0] * 100.
    # Means 7/3 = 2.333.. (model) and 10/3 = 3.333.. (ref): 2.333 / 3.333 = 69.997, not 70.0.
    rows = [{"category": "conv", "reference_score": r, "model_score": m, "unparsed": False}
            for r, m in ((3, 2), (3, 2), (4, 3))]
    assert LlavaWild.aggregate(rows)["relative"] == pytest.approx(100 * 2.333 / 3.333)


def _review_exact(body):
    content = body["messages"][1]["content"]
    ref = re.search(r"### Assistant 1\n(.*)\n### End of Assistant 1", content, re.S).group(1)
    ans = re.search(r"### Assistant 2\n(.*)\n### End of Assistant 2", content, re.S).group(1)
    return "10 10" if ref == ans else "10 2"


def test_synthetic_round_trip(tmp_path, make_judge):
    bench = BENCHMARKS.get("llava-wild")()
    synthesize_benchmark(bench.id, tmp_path, size=6, seed=4)
    samples = bench.load(tmp_path)
    assert [s.meta["category"] for s in samples] == ["conv", "detail", "complex"] * 2
    assert all(s.image.exists() and s.meta["context"] for s in samples)
    with JudgeServer(_review_exact) as server:
        judge = make_judge(server, concurrency=4)
        assert bench.score(samples, [s.meta["reference"] for s in samples], judge=judge).metrics["relative"] == 100.0
        assert bench.score(samples, ["no idea"] * 6, judge=judge).metrics["relative"] == pytest.approx(20.0)
    assert len(bench.load(tmp_path, limit=2)) == 2
    (tmp_path / "llava-bench-in-the-wild" / "answers_gpt4.jsonl").write_text('{"question_id": 0, "text": "x"}\n')
    with pytest.raises(BenchmarkFileError, match="no reference answer for question 1"):
        bench.load(tmp_path)
