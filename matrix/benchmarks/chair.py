"""CHAIR: object hallucination in detailed captions, scored against per-image ground-truth objects.

Files, under the eval folder (COCO's layout, as the CHAIR tool reads it):

- `chair/questions.jsonl`: `{"question_id", "image", "text"}` per line (the caption prompt, asked as is);
  `image` is a file name in `chair/val2014/` and in the instance annotations' `images`;
- `chair/annotations/instances_val2014.json`: COCO instances, `{"images": [{"id", "file_name"}],
  "annotations": [{"image_id", "category_id"}], "categories": [{"id", "name"}]}`;
- `chair/annotations/captions_val2014.json`: COCO captions, `{"annotations": [{"image_id", "caption"}]}`;
- `chair/synonyms.txt` (optional): the synonym table, one object per line, names separated by ", ",
  the first canonical: the CHAIR repo's `data/synonyms.txt` (LisaAnne/Hallucination) as it is, for
  COCO. Read as CHAIR reads it (`line.strip().split(', ')`, names verbatim), so its odd entries behave
  as they do there: "  motor bike" (two spaces before it), "iPhone" (a capital) and "stove top oven"
  (three words) never match a caption word. Without the file, `matrix/benchmarks/data/chair_synonyms.txt`
  (the shapes world's six shape names) is used; the synthetic twin writes its own file, of the world's
  coloured objects.
- `chair/val2014/<image>`: the images.

Ground truth per image = the canonical names of its instance categories ∪ the objects parsed from its
reference captions. A caption is parsed as CHAIR's `caption_to_words` does (utils/chair.py): lowercase,
nltk word tokens (so "man's" is "man" + "'s"), each singularised; then pairs of words are merged by
CHAIR's hard-coded COCO rules (`DOUBLE_WORDS`: "traffic light", "hot dog"... stay one object; "baby
elephant", "adult giraffe" -> the animal and "passenger train" -> the vehicle, so no person is counted;
"bow tie" -> tie; "toilet seat" -> toilet), and when a caption says both "toilet" and "seat", every
"seat" is dropped (a toilet seat is no chair); the words the table names are kept and mapped to their
canonical object. Every mention counts (a word said three times is three mentions). Our one addition:
the table's own two-word names are merged too (the shapes world's "plus sign"); on COCO's table that
adds only "dining table", which CHAIR reads as "table", the same object.

Two parts are not CHAIR's own code: the singulariser is ours (`singularize`; CHAIR's `pattern.en` does
not install on current Python), and nltk's `word_tokenize` is replaced by its word tokenizer on
sentences split at ". ", "! " and "? " (`word_tokenize` needs the punkt model, a download; for
captions the split is the same).

    CHAIR_i = hallucinated mentions / all object mentions          (over all captions)
    CHAIR_s = captions with >= 1 hallucinated mention / captions
    chair   = (CHAIR_i + CHAIR_s) / 2                               (nSFT's "CHAIR" column, eq. 30)

all x100. nSFT (appendix B.2, eq. 29) writes CHAIR_s over "sentences"; the CHAIR tool (and Rohrbach
et al.) count generated captions, one per question, and so does this module.

Sample: the nSFT paper's images and prompts are not published (1,000 random COCO val2014 images, each
with 5 LLaVA detail prompts). The question file fixes the sample; `write_questions` builds ours: 500 COCO
val2014 images drawn with `random.Random(0)` from the sorted image ids of the instance file, one
question each, "Describe this image in detail." Decoding: greedy, `max_new_tokens=512` (the detailed
description setting REFERENCE gives for SHR; CHAIR's own protocol names none).

The synthetic version (`matrix/world/benchmarks/chair.py`) also writes `chair/ground_truth.json`
(`{image: scene}`), which loading does not read.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

from matrix.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    BenchmarkFileError,
    Sample,
    Scored,
    check_answers,
    ratio,
    read_jsonl,
    image_file,
    require,
    write_jsonl,
)
from matrix.benchmarks.prompts import DETAIL_PROMPT

QUESTION_FILE = "questions.jsonl"
INSTANCES = "annotations/instances_val2014.json"
CAPTIONS = "annotations/captions_val2014.json"
IMAGE_DIR = "val2014"
SYNONYMS = "synonyms.txt"
DEFAULT_SYNONYMS = Path(__file__).parent / "data" / "chair_synonyms.txt"
PROMPT = DETAIL_PROMPT  # "Describe this image in detail."
SAMPLE_SIZE, SAMPLE_SEED = 500, 0


# ---- words -------------------------------------------------------------------------------------------
# CHAIR's hard-coded COCO rules (utils/chair.py, CHAIR.__init__): two words read as one object.
COCO_DOUBLE_WORDS = ("motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
                     "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
                     "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
                     "mobile phone", "teddy bear", "hair drier", "potted plant", "bow tie", "laptop computer",
                     "stove top oven", "home plate")  # "stove top oven" is three words: it never matches
ANIMAL_WORDS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal",
                "cub")  # "baby/adult <animal>" is the animal, not a person
VEHICLE_WORDS = ("jet", "train")  # "passenger <vehicle>" is the vehicle, not a person
DOUBLE_WORDS = {**{w: w for w in COCO_DOUBLE_WORDS},
                **{f"{q} {a}": a for a in ANIMAL_WORDS for q in ("baby", "adult")},
                **{f"passenger {v}": v for v in VEHICLE_WORDS},
                "bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_IRREGULAR = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
    "geese": "goose", "teeth": "tooth", "feet": "foot", "knives": "knife", "leaves": "leaf",
    "wolves": "wolf", "shelves": "shelf", "halves": "half", "calves": "calf", "loaves": "loaf",
    "scarves": "scarf", "wives": "wife", "lives": "life", "oxen": "ox", "dice": "die",
    "shoes": "shoe", "toes": "toe", "canoes": "canoe", "horses": "horse", "vases": "vase",
    "cases": "case", "bases": "base", "houses": "house", "buses": "bus", "glasses": "glass",
    "boxes": "box", "foxes": "fox", "axes": "axe", "ties": "tie", "pies": "pie", "skis": "ski",
}
_INVARIANT = {"sheep", "deer", "fish", "species", "series", "scissors", "news", "aircraft", "this", "is",
              "was", "has", "its", "his", "as", "us", "yes", "plus", "always", "sometimes", "perhaps"}


def singularize(word: str) -> str:
    """A small English singulariser for nouns (enough for object words; not a lemmatiser)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _INVARIANT or len(word) <= 3 or not word.endswith("s"):
        return word
    if "-" in word:  # "five-pointed" is not plural; a compound's last part carries the number
        head, _, last = word.rpartition("-")
        return f"{head}-{singularize(last)}"
    if word.endswith(("ss", "us", "is", "ous")):  # cross, bus, axis, famous
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("oes"):
        return word[:-2]
    return word[:-1]


def tokenize(text: str) -> list[str]:
    """nltk's word tokens of the lowercased text, sentence by sentence (punctuation is a token)."""
    from nltk.tokenize import NLTKWordTokenizer

    tokenizer = NLTKWordTokenizer()
    return [t for sentence in _SENTENCE_END.split(text.lower()) for t in tokenizer.tokenize(sentence)]


class Synonyms:
    """Surface words and two-word phrases -> canonical object names (CHAIR's `synonyms.txt`)."""

    def __init__(self, table: dict[str, str]):
        self.table = table  # name as the file writes it ("plus sign") -> canonical ("cross")
        self.objects = sorted(set(table.values()))
        # CHAIR's COCO rules, plus the table's own two-word names (a rule wins where both have a pair)
        self.double_words = {**{n: n for n in table if len(n.split(" ")) == 2 and n == n.strip()}, **DOUBLE_WORDS}

    @classmethod
    def read(cls, path: Path) -> Synonyms:
        """CHAIR's reading: `line.strip().split(', ')`, every name verbatim, the first canonical (a name
        on two lines names the later line's object, as CHAIR's dict keeps the last)."""
        require(path, "the CHAIR synonym table: one object per line, names separated by ', ', canonical first")
        table: dict[str, str] = {}
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            names = line.strip().split(", ")
            if names == [""]:
                continue
            for name in names:
                table[name] = names[0]
        if not table:
            raise BenchmarkFileError(f"{path}: the synonym table is empty")
        return cls(table)

    def mentions(self, caption: str) -> list[tuple[str, str]]:
        """(word, canonical object) for every object mention, in caption order (CHAIR's caption_to_words)."""
        words = [singularize(w) for w in tokenize(caption)]
        merged: list[str] = []
        i = 0
        while i < len(words):
            pair = " ".join(words[i:i + 2])
            if pair in self.double_words:  # "plus sign", "baby elephant" -> elephant, "toilet seat" -> toilet
                merged.append(self.double_words[pair])
                i += 2
            else:
                merged.append(words[i])
                i += 1
        if "toilet" in merged and "seat" in merged:  # CHAIR: "toilet seat is not chair", every seat goes
            merged = [w for w in merged if w != "seat"]
        return [(w, self.table[w]) for w in merged if w in self.table]

    def objects_in(self, caption: str) -> set[str]:
        return {canonical for _, canonical in self.mentions(caption)}


def caption_scores(mentions: list[tuple[str, str]], truth: set[str]) -> dict:
    hallucinated = [word for word, obj in mentions if obj not in truth]
    return {"mentions": [w for w, _ in mentions], "objects": [o for _, o in mentions],
            "hallucinated": hallucinated, "n_mentions": len(mentions), "n_hallucinated": len(hallucinated)}


def chair_metrics(rows: list[dict]) -> dict[str, float]:
    """CHAIR_i, CHAIR_s and their mean (x100) over per-caption rows of `caption_scores`."""
    mentions = sum(r["n_mentions"] for r in rows)
    hallucinated = sum(r["n_hallucinated"] for r in rows)
    bad_captions = sum(r["n_hallucinated"] > 0 for r in rows)
    chair_i = 100 * ratio(hallucinated, mentions)
    chair_s = 100 * ratio(bad_captions, len(rows))
    return {"chair_i": chair_i, "chair_s": chair_s, "chair": (chair_i + chair_s) / 2,
            "mentions": float(mentions), "hallucinated_mentions": float(hallucinated),
            "captions": float(len(rows)), "hallucinated_captions": float(bad_captions)}


def write_questions(instances: Path, out: Path, n: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED,
                    prompt: str = PROMPT) -> None:
    """Our fixed sample: `n` images drawn with `random.Random(seed)` from the sorted image ids of the
    instance file, one question each, in id order."""
    images = _read_json(Path(instances), "COCO instance annotations")["images"]
    by_id = {im["id"]: im["file_name"] for im in images}
    chosen = sorted(random.Random(seed).sample(sorted(by_id), min(n, len(by_id))))
    write_jsonl(Path(out), [{"question_id": i, "image": by_id[i], "text": prompt} for i in chosen])


def _read_json(path: Path, what: str):
    require(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); expected {what}") from None


@BENCHMARKS.register("chair")
class Chair(Benchmark):
    id = "chair"
    headline = "chair"
    max_new_tokens = 512

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        base = Path(root) / "chair"
        qfile = base / QUESTION_FILE
        rows = read_jsonl(qfile, 'CHAIR caption questions, one {"question_id", "image", "text"} per line')
        synonyms = self.synonyms(root)
        instances = _read_json(base / INSTANCES, "COCO instance annotations (images, annotations, categories)")
        captions = _read_json(base / CAPTIONS, "COCO caption annotations (annotations with image_id, caption)")
        try:
            ids = {im["file_name"]: im["id"] for im in instances["images"]}
            names = {c["id"]: c["name"] for c in instances["categories"]}
            truth: dict[int, set[str]] = {}
            for a in instances["annotations"]:
                name = names[a["category_id"]]  # CHAIR: inverse_synonym_dict[category name]
                if name not in synonyms.table:
                    raise BenchmarkFileError(f"{base / INSTANCES}: category {names[a['category_id']]!r} is not "
                                             f"in the synonym table")
                truth.setdefault(a["image_id"], set()).add(synonyms.table[name])
            for a in captions["annotations"]:
                truth.setdefault(a["image_id"], set()).update(synonyms.objects_in(a["caption"]))
        except (KeyError, TypeError) as e:
            raise BenchmarkFileError(f"{base / 'annotations'}: malformed COCO annotations (missing {e})") from None
        samples = []
        for n, row in enumerate(rows if limit is None else rows[:limit], 1):
            missing = [k for k in ("question_id", "image", "text") if k not in row]
            if missing:
                raise BenchmarkFileError(f"{qfile}: question {n} lacks {', '.join(missing)}")
            if row["image"] not in ids:
                raise BenchmarkFileError(f"{qfile}: question {n}: image {row['image']} is not in "
                                         f"{base / INSTANCES}")
            image = image_file(base / IMAGE_DIR / row["image"], f"the CHAIR image {row['image']} (COCO val2014)",
                               images)
            image_id = ids[row["image"]]
            samples.append(Sample(str(row["question_id"]), image, row["text"],
                                  {"image": row["image"], "image_id": image_id, "root": str(root),
                                   "objects": sorted(truth.get(image_id, set()))},
                                   official_id=row["question_id"]))
        return samples

    def synonyms(self, root: Path | None = None) -> Synonyms:
        own = Path(root) / "chair" / SYNONYMS if root is not None else None
        return Synonyms.read(own if own is not None and own.exists() else DEFAULT_SYNONYMS)

    def score(self, samples: list[Sample], answers: list[str], judge=None,
              synonyms: Synonyms | None = None) -> Scored:
        check_answers(samples, answers)
        synonyms = synonyms or self.synonyms(samples[0].meta.get("root") if samples else None)
        per_sample = []
        for s, answer in zip(samples, answers):
            row = caption_scores(synonyms.mentions(answer), set(s.meta["objects"]))
            per_sample.append({"question_id": s.question_id, "image": s.meta.get("image"), "answer": answer,
                               "truth": s.meta["objects"], **row, "correct": row["n_hallucinated"] == 0})
        return Scored(chair_metrics(per_sample), per_sample)
