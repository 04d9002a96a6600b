"""TextVQA (val, v0.5.1): questions about text in images, scored by soft accuracy against 10 annotators.

Files, under the eval folder (LLaVA's `scripts/v1_5/eval/textvqa.sh` layout):

- `textvqa/llava_textvqa_val_v051_ocr.jsonl`: `{"question_id": <image id>, "image", "text"}` per line,
  `text` = question + "\\nReference OCR token: t1, t2, ..." (absent when no token) + the short-answer
  suffix;
- `textvqa/TextVQA_0.5.1_val.json`: `{"data": [{"image_id", "question", "answers": [10 strings],
  "question_id", ...}]}`;
- `textvqa/train_images/<image>`: the images (TextVQA's val images live in its train_images folder).

Ground truth is found as LLaVA's `eval_textvqa.py` finds it: by (image id, the question recovered
from the prompt, lowercased). Scoring follows m4c's `TextVQAAccuracyEvaluator`: the answer and the
ten annotations go through the EvalAI answer normalisation (`normalise`), and the answer's score is
the mean, over the ten ways to leave one annotator out, of min(1, matches among the other nine / 3).
max_new_tokens 128 (model_vqa_loader).
"""
from __future__ import annotations

import json
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
)

QUESTION_FILE = "llava_textvqa_val_v051_ocr.jsonl"
TRUTH_FILE = "TextVQA_0.5.1_val.json"
IMAGE_DIR = "train_images"
OCR_PREFIX = "Reference OCR token: "

# ---- the EvalAI answer normalisation ------------------------------------------------------------
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
               ",", "?", "!")
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
           "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# EvalAI's period pattern is "(?!<=\d)(\.)(?!\d)": its first group is a look-*ahead* for the text "<=d",
# so in effect a period goes unless a digit follows it ("3.5" keeps its period, "end." loses it).
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_PERIOD_MAX_REPLACEMENTS = 32  # EvalAI passes re.UNICODE (= 32) where `sub` takes its count


# EvalAI's contraction table, as m4c_evaluator.py (LLaVA) has it: each line "contraction: the spellings
# that become it". Kept as the official has it, odd entries included: "somebody'd" becomes "somebodyd",
# "twas" becomes "'twas", "let's"/"she's" map to themselves, and the keys with a capital (Im, Ive,
# Id've, I'dve) never match the lowercased answers. A spelling absent here ("youdve") stays as it is.
_CONTRACTION_TABLE = """\
ain't: aint
aren't: arent
can't: cant
could've: couldve
couldn't: couldnt
couldn't've: couldn'tve couldnt've
didn't: didnt
doesn't: doesnt
don't: dont
hadn't: hadnt
hadn't've: hadnt've hadn'tve
hasn't: hasnt
haven't: havent
he'd: hed
he'd've: hed've he'dve
he's: hes
how'd: howd
how'll: howll
how's: hows
I'd've: Id've I'dve
I'm: Im
I've: Ive
isn't: isnt
it'd: itd
it'd've: itd've it'dve
it'll: itll
let's: let's
ma'am: maam
mightn't: mightnt
mightn't've: mightnt've mightn'tve
might've: mightve
mustn't: mustnt
must've: mustve
needn't: neednt
not've: notve
o'clock: oclock
oughtn't: oughtnt
'ow's'at: ow's'at 'ows'at 'ow'sat
shan't: shant
she'd've: shed've she'dve
she's: she's
should've: shouldve
shouldn't: shouldnt
shouldn't've: shouldnt've shouldn'tve
somebodyd: somebody'd
somebody'd've: somebodyd've somebody'dve
somebody'll: somebodyll
somebody's: somebodys
someone'd: someoned
someone'd've: someoned've someone'dve
someone'll: someonell
someone's: someones
something'd: somethingd
something'd've: somethingd've something'dve
something'll: somethingll
that's: thats
there'd: thered
there'd've: thered've there'dve
there're: therere
there's: theres
they'd: theyd
they'd've: theyd've they'dve
they'll: theyll
they're: theyre
they've: theyve
'twas: twas
wasn't: wasnt
we'd've: wed've we'dve
we've: weve
weren't: werent
what'll: whatll
what're: whatre
what's: whats
what've: whatve
when's: whens
where'd: whered
where's: wheres
where've: whereve
who'd: whod
who'd've: whod've who'dve
who'll: wholl
who's: whos
who've: whove
why'll: whyll
why're: whyre
why's: whys
won't: wont
would've: wouldve
wouldn't: wouldnt
wouldn't've: wouldnt've wouldn'tve
y'all: yall
y'all'll: yall'll y'allll
y'all'd've: yall'd've y'alld've y'all'dve
you'd: youd
you'd've: youd've you'dve
you'll: youll
you're: youre
you've: youve
"""


def _contractions() -> dict[str, str]:
    out = {}
    for line in _CONTRACTION_TABLE.splitlines():
        target, spellings = line.split(": ", 1)
        out.update({spelling: target for spelling in spellings.split()})
    return out


CONTRACTIONS = _contractions()


def _punctuation(text: str) -> str:
    """A mark next to a space (or any digit,digit in the text) is deleted, otherwise it becomes a
    space; then periods not followed by a digit are deleted."""
    out = text
    digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in PUNCTUATION:
        if p + " " in text or " " + p in text or digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_REPLACEMENTS)


def _digits_articles(text: str) -> str:
    words = [NUMBERS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalise(answer: str) -> str:
    """EvalAI's answer processing, in its order: lowercase, drop "," and "?", split off "'s", strip;
    newlines/tabs to spaces; punctuation; number words -> digits, articles out, contractions."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles(_punctuation(text))


def soft_accuracy(answer: str, annotations: list[str]) -> float:
    """Mean over the leave-one-annotator-out subsets of min(1, #matches / 3), after normalisation."""
    pred = normalise(answer)
    gts = [normalise(a) for a in annotations]
    if not gts:
        return 0.0
    scores = []
    for left_out in range(len(gts)):
        matches = sum(g == pred for i, g in enumerate(gts) if i != left_out)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


def asked_question(prompt: str) -> str:
    """eval_textvqa.py's prompt_processor: the question line of a prompt, lowercased."""
    lines = prompt.split("\n")
    if OCR_PREFIX in prompt and len(lines) == 3:
        return (lines[1] if prompt.startswith(OCR_PREFIX.rstrip()) else lines[0]).lower()
    if len(lines) == 2:
        return lines[0].lower()
    raise ValueError(f"unexpected TextVQA prompt layout: {prompt!r}")


@BENCHMARKS.register("textvqa")
class TextVQA(Benchmark):
    id = "textvqa"
    headline = "accuracy"
    max_new_tokens = 128  # textvqa.sh runs model_vqa_loader with its default

    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        """Questions in file order; `limit` keeps the first `limit`."""
        base = Path(root) / "textvqa"
        qfile = base / QUESTION_FILE
        rows = read_jsonl(qfile, 'LLaVA\'s TextVQA questions, one {"question_id": <image id>, "image", "text"} '
                                 "per line")
        tfile = require(base / TRUTH_FILE, "TextVQA's val annotations ({\"data\": [{image_id, question, "
                                           "answers}]})")
        try:
            data = json.loads(tfile.read_text(encoding="utf-8"))["data"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise BenchmarkFileError(f"{tfile}: expected a JSON object with a \"data\" list") from None
        truth = {(str(a["image_id"]), a["question"].lower()): a for a in data}
        samples = []
        for n, row in enumerate(rows[:limit] if limit is not None else rows, 1):
            missing = [k for k in ("question_id", "image", "text") if k not in row]
            if missing:
                raise BenchmarkFileError(f"{qfile}: question {n} lacks {', '.join(missing)}")
            try:
                key = (str(row["question_id"]), asked_question(row["text"]))
            except ValueError as e:
                raise BenchmarkFileError(f"{qfile}: line {n}: {e}") from None
            if key not in truth:
                raise BenchmarkFileError(f"{tfile}: no annotation for image {key[0]} and question {key[1]!r} "
                                         f"({qfile}, line {n})")
            gold = truth[key]
            image = image_file(base / IMAGE_DIR / row["image"], f"the TextVQA image {row['image']}", images)
            samples.append(Sample(str(row["question_id"]), image, row["text"],
                                  {"answers": list(gold["answers"]), "textvqa_question_id": gold.get("question_id")},
                                  official_id=row["question_id"]))
        return samples

    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        per_sample = []
        for s, answer in zip(samples, answers):
            acc = soft_accuracy(answer, s.meta["answers"])
            per_sample.append({"question_id": s.question_id, "question": s.question, "answer": answer,
                               "parsed": normalise(answer), "label": s.meta["answers"], "score": acc,
                               "correct": acc == 1.0})
        return Scored({"accuracy": 100 * ratio(sum(r["score"] for r in per_sample), len(per_sample))}, per_sample)
