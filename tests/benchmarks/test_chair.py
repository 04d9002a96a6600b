"""CHAIR: caption parsing (plurals, two-word objects, repeats), CHAIR_i / CHAIR_s / their mean by hand,
ground truth from instances ∪ reference captions, and the synthetic files round trip."""
import json

import pytest

from matrix.benchmarks.base import BENCHMARKS, BenchmarkFileError, Sample
from matrix.benchmarks.chair import (
    DEFAULT_SYNONYMS,
    Chair,
    Synonyms,
    chair_metrics,
    caption_scores,
    singularize,
    tokenize,
    write_questions,
)
from matrix.world.benchmarks import synthesize_benchmark
from matrix.world.scene import COLOURS, OBJECTS, SHAPES


@pytest.fixture(scope="module")
def syn():
    return Synonyms.read(DEFAULT_SYNONYMS)


@pytest.mark.parametrize("word,singular", [
    ("circles", "circle"), ("crosses", "cross"), ("cross", "cross"), ("stars", "star"),
    ("diamonds", "diamond"), ("boxes", "box"), ("berries", "berry"), ("people", "person"),
    ("bus", "bus"), ("glasses", "glass"), ("plus", "plus"), ("five-pointed", "five-pointed"),
    ("is", "is"), ("dishes", "dish"), ("knives", "knife"),
])
def test_singularize(word, singular):
    assert singularize(word) == singular


def test_tokenize_as_nltk_word_tokenize():
    # nltk.word_tokenize on the lowercased caption: hyphenated words stay whole, punctuation and "'s" split
    assert tokenize("A Five-Pointed star, two discs. The man's hat.") == [
        "a", "five-pointed", "star", ",", "two", "discs", ".", "the", "man", "'s", "hat", "."]


def test_the_table_maps_every_shape_and_two_word_names(syn):
    assert set(syn.objects) == set(SHAPES)
    assert syn.table["plus sign"] == "cross" and syn.table["five-pointed star"] == "star"


def test_mentions_merge_two_word_phrases_and_singularize(syn):
    caption = "Two Plus Signs, a five-pointed star and three stars; a disc. Signs and pointed stars."
    assert syn.mentions(caption) == [
        ("plus sign", "cross"),            # plural two-word phrase: singularised, then merged
        ("five-pointed star", "star"),     # one mention, not "star" again on its own
        ("star", "star"), ("disc", "circle"),
        ("star", "star"),                  # "pointed stars": "pointed" is no phrase, "stars" counts
    ]                                      # "signs" alone is no object


def test_golden_captions_by_hand(syn):
    truth = {"circle", "cross", "star"}
    captions = [
        # circle, cross (plus sign), circle, star (stars), diamond -> 5 mentions, 1 hallucinated (diamond)
        "There are two red circles and a plus sign. The circles sit above three stars and a blue diamond.",
        # circle x3 (repeated mentions all count): 3 mentions, 0 hallucinated
        "A circle. Another circle. The circle is red.",
        # square, square, five-pointed star: 3 mentions, 2 hallucinated (a repeated hallucination counts twice)
        "A square next to a square and a five-pointed star.",
        # no object words at all: 0 mentions, not hallucinated
        "A colourful picture.",
    ]
    rows = [caption_scores(syn.mentions(c), truth) for c in captions]
    assert [r["n_mentions"] for r in rows] == [5, 3, 3, 0]
    assert [r["hallucinated"] for r in rows] == [["diamond"], [], ["square", "square"], []]
    m = chair_metrics(rows)
    # CHAIR_i = (1 + 0 + 2 + 0) / (5 + 3 + 3 + 0) = 3/11 = 27.27; CHAIR_s = 2/4 = 50; chair = 38.64
    assert m["chair_i"] == pytest.approx(300 / 11)
    assert m["chair_s"] == pytest.approx(50.0)
    assert m["chair"] == pytest.approx((300 / 11 + 50) / 2)
    assert (m["mentions"], m["hallucinated_mentions"], m["captions"], m["hallucinated_captions"]) == (11, 3, 4, 2)


def test_score_uses_each_samples_truth(syn):
    samples = [Sample("1", None, "Describe this image in detail.", {"objects": ["cross"]}),
               Sample("2", None, "Describe this image in detail.", {"objects": ["diamond", "square"]})]
    answers = ["A plus sign and a rhombus.", "Two rhombi? No: two diamonds and a square."]
    scored = Chair().score(samples, answers, synonyms=syn)
    # caption 1: cross ok, diamond (rhombus) hallucinated: 2 mentions, 1 bad; caption 2: "rhombi" is no
    # word of the table (the singulariser leaves it), diamond + square: 2 mentions, 0 bad
    # CHAIR_i = 1/4 = 25, CHAIR_s = 1/2 = 50, chair = 37.5
    assert scored.metrics["chair_i"] == pytest.approx(25.0)
    assert scored.metrics["chair_s"] == pytest.approx(50.0)
    assert scored.metrics["chair"] == pytest.approx(37.5)
    assert scored.per_sample[0]["hallucinated"] == ["rhombus"] and scored.per_sample[1]["correct"]
    with pytest.raises(ValueError):
        Chair().score(samples, answers[:1], synonyms=syn)


def test_synthetic_round_trip_and_truth_from_instances_and_captions(tmp_path):
    bench = BENCHMARKS.get("chair")()
    synthesize_benchmark(bench.id, tmp_path, size=6, seed=3)
    samples = bench.load(tmp_path)
    truth = json.loads((tmp_path / "chair" / "ground_truth.json").read_text())
    assert len(samples) == 6
    for s in samples:
        assert s.question == "Describe this image in detail." and s.image.exists()
        scene = truth[s.meta["image"]]["objects"]
        assert s.meta["objects"] == sorted({f"{o['colour']} {o['shape']}" for o in scene})
        assert len(truth[s.meta["image"]]["objects"]) >= 3  # crowded, as COCO's images are
    # the twin's own table: the world's 36 objects, each with its colour before the one-word synonyms
    table = Synonyms.read(tmp_path / "chair" / "synonyms.txt")
    assert set(table.objects) == set(OBJECTS)
    assert table.table["green disc"] == "green circle" and table.table["red rhombus"] == "red diamond"
    # the true captions score 0; the right shape in a colour the image lacks is a hallucination
    from matrix.world.language import caption
    from matrix.world.scene import Obj, Scene
    scenes = [Scene([Obj(**{k: o[k] for k in ("shape", "colour", "row", "col")}) for o in truth[s.meta["image"]]["objects"]])
              for s in samples]
    perfect = bench.score(samples, [caption(sc) for sc in scenes])
    assert perfect.metrics["chair"] == 0.0
    assert perfect.metrics["mentions"] == sum(len(sc.objects) for sc in scenes)
    recoloured = [next(name for name in (f"{c} {sc.objects[0].shape}" for c in COLOURS)
                       if name not in s.meta["objects"]) for s, sc in zip(samples, scenes)]
    bad = bench.score(samples, [f"A {a} and a {sc.objects[0].name}." for a, sc in zip(recoloured, scenes)])
    # per caption 2 mentions, 1 hallucinated: CHAIR_i = 6/12 = 50, CHAIR_s = 6/6 = 100
    assert bad.metrics["chair_i"] == 50.0 and bad.metrics["chair_s"] == 100.0
    assert len(bench.load(tmp_path, limit=2)) == 2


def test_ground_truth_includes_objects_only_in_reference_captions(tmp_path):
    bench = Chair()
    synthesize_benchmark(bench.id, tmp_path, size=1, seed=0)
    base = tmp_path / "chair"
    captions = json.loads((base / "annotations/captions_val2014.json").read_text())
    captions["annotations"].append({"id": 99, "image_id": 1,
                                    "caption": "Also a purple disc and green pentagrams."})
    (base / "annotations/captions_val2014.json").write_text(json.dumps(captions))
    [sample] = bench.load(tmp_path)
    assert {"purple circle", "green star"} <= set(sample.meta["objects"])


def test_own_synonym_table_and_errors(tmp_path):
    bench = Chair()
    synthesize_benchmark(bench.id, tmp_path, size=2, seed=0)
    base = tmp_path / "chair"
    inst = json.loads((base / "annotations/instances_val2014.json").read_text())
    inst["annotations"].append({"id": 99, "image_id": 1, "category_id": OBJECTS.index("red triangle") + 1})
    (base / "annotations/instances_val2014.json").write_text(json.dumps(inst))
    (base / "synonyms.txt").write_text("\n\n")
    with pytest.raises(BenchmarkFileError, match="synonym table is empty"):
        bench.load(tmp_path)
    (base / "synonyms.txt").write_text("circle\nsquare\n")
    with pytest.raises(BenchmarkFileError, match="category '[a-z]+ [a-z]+' is not in the synonym table"):
        bench.load(tmp_path)
    (base / "synonyms.txt").write_text("red triangle, red wedge\n")  # the root's own table replaces ours
    (base / "annotations/instances_val2014.json").write_text(json.dumps(
        {**inst, "annotations": [a for a in inst["annotations"] if a["id"] == 99]}))
    (base / "annotations/captions_val2014.json").write_text(json.dumps({"annotations": []}))
    samples = bench.load(tmp_path)
    assert samples[0].meta["objects"] == ["red triangle"] and samples[1].meta["objects"] == []
    scored = bench.score(samples, ["A red wedge and a red circle.", "A red wedge."])
    # "red circle" is no name of this table; red wedge is right for image 1, hallucinated for image 2
    assert scored.metrics["chair_i"] == pytest.approx(50.0) and scored.metrics["chair_s"] == pytest.approx(50.0)
    (base / "questions.jsonl").unlink()
    with pytest.raises(BenchmarkFileError, match="questions.jsonl"):
        bench.load(tmp_path)


def test_write_questions_is_a_fixed_seeded_sample(tmp_path):
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in range(1, 41)]
    (tmp_path / "inst.json").write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    write_questions(tmp_path / "inst.json", tmp_path / "a.jsonl", n=10)
    write_questions(tmp_path / "inst.json", tmp_path / "b.jsonl", n=10)
    a = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    assert len(a) == 10 and [r["question_id"] for r in a] == sorted(r["question_id"] for r in a)
    assert all(r["text"] == "Describe this image in detail." for r in a)


# ---- CHAIR's own rules on COCO's table ----------------------------------------------------------------
# A table in the official layout (lines copied in form from LisaAnne/Hallucination data/synonyms.txt:
# ", "-separated, "  motor bike" with two spaces, "iPhone", "stove top oven"), small enough to write here.
COCO_LINES = """person, girl, boy, man, woman, kid, child, chef, baker, people, adult, rider, children, baby, worker, passenger
motorcycle,  motor bike, motor cycle, motorbike, scooter
elephant
giraffe
train, locomotive
dog, puppy
handbag, bag, purse
chair, seat, stool
toilet
tie, necktie, bow tie
cell phone, mobile phone, phone, cellphone, telephone, phon, smartphone, iPhone
oven, stove, stove top oven, range top
dining table, table, desk
"""


@pytest.fixture
def coco(tmp_path):
    path = tmp_path / "synonyms.txt"
    path.write_text(COCO_LINES)
    return Synonyms.read(path)


# Each: caption -> the objects CHAIR's caption_to_words gives (official result: its code run on the
# caption with this table, by hand; the comment names the official rule).
@pytest.mark.parametrize("caption,objects", [
    ("A woman's bag and the dog's leash.", ["person", "handbag", "dog"]),   # nltk splits the possessive
    ("A baby elephant next to an adult giraffe.", ["elephant", "giraffe"]),  # no person: animal rules
    ("A passenger train at the station.", ["train"]),                       # no person: vehicle rule
    ("A toilet seat in a small room.", ["toilet"]),                         # "toilet seat" -> toilet
    ("A toilet and a seat.", ["toilet"]),                                   # toilet present: seats dropped
    ("A seat by the window.", ["chair"]),
    ("A man in a bow tie.", ["person", "tie"]),                             # "bow tie" -> tie
    ("A motor bike and a scooter.", ["motorcycle"]),   # official quirk: "  motor bike" never matches
    ("Her iPhone and a cell phone.", ["cell phone"]),  # official quirk: "iPhone" (capital) never matches
    ("A stove top oven.", ["oven", "oven"]),           # three words never merge: "stove" and "oven"
    ("Two men at a dining table.", ["person", "dining table"]),
])
def test_coco_caption_rules(coco, caption, objects):
    assert [obj for _, obj in coco.mentions(caption)] == objects


def test_coco_rules_change_chair_by_hand(coco):
    truth = {"person", "dog", "handbag", "elephant", "toilet"}
    captions = ["A woman's bag and the dog's leash.",          # person, handbag, dog: 3 mentions, none bad
                "A baby elephant near a toilet seat.",         # elephant, toilet: none bad (no person/chair)
                "A man beside a toilet and a seat.",           # person, toilet: none bad (seat dropped)
                "A passenger train."]                          # train: 1 bad
    m = chair_metrics([caption_scores(coco.mentions(c), truth) for c in captions])
    # CHAIR_i = 1 / (3 + 2 + 2 + 1) = 12.5; CHAIR_s = 1/4 = 25
    assert (m["chair_i"], m["chair_s"]) == (pytest.approx(12.5), pytest.approx(25.0))


def test_the_real_synonym_table_loads():
    import os
    from pathlib import Path

    real = Path(os.environ.get("MATRIX_REAL_EVAL") or Path(__file__).resolve().parents[2] / ".." / "shared" / "real-eval")
    path = real / "chair" / "synonyms.txt"
    if not path.exists():
        pytest.skip(f"the official CHAIR synonyms.txt is not at {path} (set MATRIX_REAL_EVAL)")
    table = Synonyms.read(path)
    assert len(table.objects) == 80 and table.table["stove top oven"] == "oven"
    assert [o for _, o in table.mentions("A baby elephant, a toilet seat and a woman's purse.")] == [
        "elephant", "toilet", "person", "handbag"]
