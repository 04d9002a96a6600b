"""MM-Vet against the scripted loopback judge: hand-computed totals and capabilities, MM-Vet's
retry-with-higher-temperature rule for unreadable replies, errors propagate, the cache answers reruns."""
import json

import pytest
from tests.judge_server import JudgeServer, error

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.judge import JudgeError
from matrix.benchmarks.mmvet import RETRY_SUFFIX, TEMPLATE, MMVet, judge_line
from matrix.world.benchmarks import synthesize_benchmark


pytestmark = pytest.mark.usefixtures("judge_env")  # conftest: a test key, never a real one


def _samples():
    caps = [["rec"], ["rec", "math"], ["rec", "spat"], ["rec", "math"], ["spat"]]
    return [Sample(str(i), None, f"question {i}?", {"key": f"v1_{i}", "question": f"question {i}?",
                                                    "answer": f"gt{i}<OR>alt{i}", "capability": c})
            for i, c in enumerate(caps)]


ANSWERS = ["answer 0", "answer 1", "answer 2", "answer 3", "answer 4"]
# In request order (one request in flight at a time): the first round for all five samples, then the
# retries of samples 3 and 4, then 3 is done and only 4 is asked again.
SCRIPT = ["1.0", "0.5 because it is half right", "0.0", "Score:", "x",   # first round, temperature 0
          "no idea", "x",                                                # retry 1: temperature 0.0
          "0.6", "x",                                                    # retry 2: temperature 0.5
          "x",                                                           # retry 3: temperature 1.0
          "x"]                                                           # retry 4: temperature 1.5


def test_totals_capabilities_and_the_retry_rule_by_hand(make_judge):
    with JudgeServer(list(SCRIPT), default=lambda body: "x") as server:
        judge = make_judge(server)
        scored = MMVet().score(_samples(), ANSWERS, judge=judge)
        requests = [r.body for r in server.chat_requests]
        assert judge.usage()["unparsed"] == 7
        # A second identical run: the 4 readable replies are cached; the 7 unreadable ones were not, and are
        # asked again (here unreadable again: the same numbers).
        again = MMVet().score(_samples(), ANSWERS, judge=judge)
        assert len(requests) == 11 and len(server.chat_requests) == 11 + 7
    assert again.metrics == scored.metrics and judge.usage()["cached_hits"] == 4
    m = scored.metrics
    # scores 1.0, 0.5, 0.0, 0.6 (third reply), 0 (five unreadable replies)
    # total = (1 + 0.5 + 0 + 0.6 + 0) / 5 = 0.42 -> 42.0
    assert m["total"] == pytest.approx(42.0)
    # rec: samples 0-3 -> (1 + 0.5 + 0 + 0.6) / 4 = 52.5; math: 1, 3 -> 1.1 / 2 = 55; spat: 2, 4 -> 0
    assert m["cap_rec"] == pytest.approx(52.5)
    assert m["cap_math"] == pytest.approx(55.0)
    assert m["cap_spat"] == pytest.approx(0.0)
    assert "cap_ocr" not in m
    assert m["unparsed"] == 1.0 and m["runs"] == 1.0
    assert [r["score"] for r in scored.per_sample] == [1.0, 0.5, 0.0, 0.6, 0.0]
    assert scored.per_sample[3]["judge_replies"] == ["Score:", "no idea", "0.6"]
    assert scored.per_sample[4]["unparsed"] and len(scored.per_sample[4]["judge_replies"]) == 5
    # 5 + 2 + 2 + 1 + 1 requests; temperatures as MM-Vet raises them; max_tokens 3
    assert len(requests) == 11
    assert [r["temperature"] for r in requests] == [0.0] * 7 + [0.5, 0.5, 1.0, 1.5]
    assert all(r["max_tokens"] == 3 for r in requests)
    first = requests[0]["messages"][0]["content"]
    assert first == TEMPLATE + "\n" + "question 0? | gt0 <OR> alt0 | answer 0 | "
    assert all(r["messages"][0]["content"].endswith(RETRY_SUFFIX) for r in requests[5:])
    assert not requests[4]["messages"][0]["content"].endswith(RETRY_SUFFIX)


def test_a_judge_error_propagates(make_judge):
    with JudgeServer([error(400, "bad request")]) as server:
        with pytest.raises(JudgeError, match="HTTP 400"):
            MMVet().score(_samples()[:1], ANSWERS[:1], judge=make_judge(server))
    with pytest.raises(ValueError, match="judge"):
        MMVet().score(_samples()[:1], ANSWERS[:1])


def test_a_template_file_replaces_ours(make_judge, tmp_path):
    path = tmp_path / "official.txt"
    path.write_text("OFFICIAL PROMPT TEXT\n")
    with JudgeServer(["1"]) as server:
        scored = MMVet(template_path=path).score(_samples()[:1], ANSWERS[:1], judge=make_judge(server))
        content = server.chat_requests[0].body["messages"][0]["content"]
    # verbatim, then "\n" and the sample line: mm-vet_evaluator.py's `prompt + "\n" + " | ".join(...)`
    assert content == "OFFICIAL PROMPT TEXT\n\n" + judge_line("question 0?", "gt0<OR>alt0", "answer 0")
    assert scored.metrics["total"] == 100.0
    with pytest.raises(BenchmarkFileError, match="missing.txt"):
        MMVet(template_path=tmp_path / "missing.txt").template()


def _grade_exact(body):
    """A judge that reads the sample line and gives 1.0 when the prediction is one of the <OR> answers."""
    line = body["messages"][0]["content"].rsplit("\n", 1)[-1]
    _, truth, prediction, _ = line.split(" | ")
    return "1.0" if prediction in [t.strip() for t in truth.split("<OR>")] else "0.0"


def test_synthetic_round_trip(tmp_path, make_judge):
    bench = BENCHMARKS.get("mmvet")()
    synthesize_benchmark(bench.id, tmp_path, size=10, seed=1)
    samples = bench.load(tmp_path)
    assert len(samples) == 10 and all(s.image.exists() for s in samples)
    truth = json.loads((tmp_path / "mm-vet" / "mm-vet.json").read_text())
    assert [s.meta["key"] for s in samples] == [f"v1_{i}" for i in range(10)]
    assert {c for s in samples for c in s.meta["capability"]} == {"rec", "math", "spat"}
    right = [s.meta["answer"].split("<OR>")[0] for s in samples]
    with JudgeServer(_grade_exact) as server:
        judge = make_judge(server, concurrency=4)
        assert bench.score(samples, right, judge=judge).metrics["total"] == 100.0
        wrong = bench.score(samples, ["banana"] * 10, judge=judge).metrics
    assert wrong["total"] == 0.0 and wrong["unparsed"] == 0.0
    assert truth["v1_2"]["capability"] == ["rec", "math"]
    assert len(bench.load(tmp_path, limit=3)) == 3
    (tmp_path / "mm-vet" / "mm-vet.json").write_text(json.dumps({"v1_0": truth["v1_0"]}))
    with pytest.raises(BenchmarkFileError, match="no v1_1"):
        bench.load(tmp_path)


def test_replaying_stored_grades_per_capability_and_run(tmp_path):
    # MM-Vet's files in its layout (mm-vet.json keyed v1_<id>) and a grade file as mm-vet_evaluator.py
    # writes it: {"v1_<id>": {"model": [...], "content": [reply per run], "score": [...]}}
    base = tmp_path / "mm-vet"
    base.mkdir()
    truth = {"v1_0": {"capability": ["rec"], "question": "q0", "answer": "a"},
             "v1_1": {"capability": ["rec", "ocr"], "question": "q1", "answer": "b"},
             "v1_2": {"capability": ["ocr"], "question": "q2", "answer": "c"}}
    (base / "mm-vet.json").write_text(json.dumps(truth))
    grades = {"v1_0": {"content": ["1.0", "0.5"]}, "v1_1": {"content": ["0.4", " 0.6"]},  # " 0.6": unreadable
              "v1_2": {"content": ["0.0", "1.0"]}}
    (tmp_path / "grades.json").write_text(json.dumps(grades))
    answers = [{"question_id": i, "text": f"answer {i}"} for i in range(3)]
    m = MMVet().replay(tmp_path, tmp_path / "grades.json", answers).metrics
    # run 1: (1.0 + 0.4 + 0.0) / 3 = 46.67; run 2: (0.5 + 0 + 1.0) / 3 = 50.0 (" 0.6" scores 0, as MM-Vet
    # records after its retries); total = their mean 48.33, std (numpy's) = 1.667
    assert (m["total_run1"], m["total_run2"]) == (pytest.approx(140 / 3), pytest.approx(50.0))
    assert m["total"] == pytest.approx(145 / 3) and m["std"] == pytest.approx(5 / 3)
    # rec: run 1 (1.0 + 0.4)/2 = 70, run 2 (0.5 + 0)/2 = 25 -> 47.5; ocr: run 1 20, run 2 50 -> 35
    assert m["cap_rec"] == pytest.approx(47.5) and m["cap_ocr"] == pytest.approx(35.0)
    assert m["unparsed"] == 1 and m["runs"] == 2
    with pytest.raises(BenchmarkFileError, match="the answer file lacks"):
        MMVet().replay(tmp_path, tmp_path / "grades.json", answers[:2])
    del grades["v1_2"]
    (tmp_path / "grades.json").write_text(json.dumps(grades))
    with pytest.raises(BenchmarkFileError, match="no grade for 1 questions"):
        MMVet().replay(tmp_path, tmp_path / "grades.json", answers)
