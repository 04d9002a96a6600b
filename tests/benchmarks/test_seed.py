"""SEED-Bench image accuracy: convert_seed_for_submission.py's exact match by hand, and round trip."""
import json

import pytest

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.seed import SeedBench
from matrix.world import language
from matrix.world.benchmarks import synthesize_benchmark


def _s(qid, label, qtype):
    return Sample(qid, None, "q", {"label": label, "question_type_id": qtype, "question_type": str(qtype)})


def test_exact_letter_match_pooled_by_hand():
    samples = [_s("1", "A", 3), _s("2", "B", 3), _s("3", "C", 3), _s("4", "D", 5), _s("5", "A", 5)]
    answers = ["A", "B.", "c", "D", "The answer is A"]
    scored = SeedBench().score(samples, answers)
    # only exact letters count: 1 and 4 right -> 2/5 = 40; type 3: 1/3, type 5: 1/2 (pooled, not averaged)
    assert scored.metrics == pytest.approx({"accuracy": 40.0, "type_3": 100 / 3, "type_5": 50.0, "not_asked": 0})
    assert [r["correct"] for r in scored.per_sample] == [True, False, False, True, False]


def test_the_denominator_is_every_image_question_of_the_annotations(tmp_path):
    synthesize_benchmark("seed", tmp_path, 6, seed=1)
    base = tmp_path / "seed_bench"
    rows = [json.loads(line) for line in (base / "llava-seed-bench.jsonl").read_text().splitlines()]
    data = json.loads((base / "SEED-Bench.json").read_text())
    image_ids = [q["question_id"] for q in data["questions"] if q["data_type"] == "image"]
    dropped = str(image_ids[0])
    (base / "llava-seed-bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows
                                                         if str(r["question_id"]) != dropped))
    samples = SeedBench().load(tmp_path)
    m = SeedBench().score(samples, [s.meta["label"] for s in samples]).metrics
    # convert_seed_for_submission.py counts the question the file never asked as wrong: 5 of 6 right
    # (official result by hand: its type_counts come from SEED-Bench.json, its correct counts from the answers)
    assert m["accuracy"] == pytest.approx(100 * 5 / 6) and m["not_asked"] == 1
    limited = SeedBench().load(tmp_path, limit=1)   # a shortened run divides by what it asked
    assert SeedBench().score(limited, [s.meta["label"] for s in limited]).metrics["accuracy"] == 100.0


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed")
    synthesize_benchmark("seed", root, 15, seed=8)
    return root


def test_synthetic_round_trip(synthetic):
    samples = SeedBench().load(synthetic)
    base = synthetic / "seed_bench"
    data = json.loads((base / "SEED-Bench.json").read_text())
    scenes = json.loads((base / "ground_truth.json").read_text())
    videos = [q for q in data["questions"] if q["data_type"] == "video"]
    assert videos and not {q["question_id"] for q in videos} & {s.question_id for s in samples}
    assert len(samples) == 15 and all(s.image.exists() for s in samples)
    gold = {q["question_id"]: q for q in data["questions"]}
    for s in samples:
        q = gold[s.question_id]
        assert s.question == (f"{q['question']}\nA. {q['choice_a']}\nB. {q['choice_b']}\nC. {q['choice_c']}"
                              f"\nD. {q['choice_d']}{language.MULTIPLE_CHOICE_SUFFIX}")
        right = q[f"choice_{s.meta['label'].lower()}"]
        objs = scenes[s.question_id]["objects"]
        if q["question"].startswith("How many"):
            shape = next(o["shape"] for o in objs if language.count_question(o["shape"]) == q["question"])
            assert right == str(sum(o["shape"] == shape for o in objs))
        elif q["question"].startswith("What color"):
            assert any(q["question"] ==
                       f"What color is the {o['shape']} at the {o['position']}?" and o["colour"] == right
                       for o in objs)
    assert SeedBench().score(samples, [s.meta["label"] for s in samples]).metrics["accuracy"] == 100.0
    limited = SeedBench().load(synthetic, limit=1)
    assert len(limited) == len({s.meta["question_type_id"] for s in samples})


def test_missing_files_are_named(tmp_path):
    synthesize_benchmark("seed", tmp_path, 2, seed=0)
    base = tmp_path / "seed_bench"
    (base / "SEED-Bench-image" / "1000.png").unlink()
    with pytest.raises(BenchmarkFileError, match=r"SEED-Bench-image/1000\.png not found"):
        SeedBench().load(tmp_path)
    (base / "SEED-Bench.json").unlink()
    with pytest.raises(BenchmarkFileError, match=r"SEED-Bench\.json not found"):
        SeedBench().load(tmp_path)
    (base / "llava-seed-bench.jsonl").unlink()
    with pytest.raises(BenchmarkFileError, match=r"llava-seed-bench\.jsonl not found"):
        SeedBench().load(tmp_path)
