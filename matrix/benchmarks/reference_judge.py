"""A rule-based grader for the synthetic world's judged benchmarks, declared as `judge.provider: reference`.

Offline runs (the quickstart, CI) have no LLM judge. For the shapes world the ground truth is exact,
so MM-Vet and MMHal prompts can be graded by rules instead: this class reads the prompts the benchmark
modules build (MM-Vet's last `question | truth | prediction |` line; MMHal's `Image contents:`,
`Standard answer:` and `Response:` lines) and replies in the form their parsers read. It is never a
fallback: a spec picks it by name, every judged result records `provider: reference`, and a prompt it
cannot grade (another benchmark, a real dataset's free text) is a `JudgeError`.

Numbers graded this way are not comparable with GPT-4-graded ones; they measure the same thing on a
world where "right" is decidable.

Rules
- MM-Vet: the truth's `<OR>` alternatives each split into `<AND>` parts; a part is found when its
  words occur in the prediction in order (number words and digits are the same); the score is the
  best alternative's found fraction, to one decimal, 0.0 when the prediction names a different number
  than a numeric truth.
- MMHal: a response hallucinates when it names a shape, or a coloured shape, that neither the image
  contents nor the question or standard answer hold; it is informative when it contains the standard answer's content words (all: fully, some:
  partly). Ratings follow MMHal's scale: clean 5/4/3 (fully/partly/not informative), hallucinating
  2/1/0.
- In-domain (Table 3), two scores 0-10. Accuracy: 10 x the fraction of the reference's content words
  the answer holds (rounded), halved when the answer names a shape or coloured shape that neither the
  reference nor the question holds. Instruction following: 0 for an empty answer; when the question asks
  for a single word or phrase, 10 for at most four words, else 4; otherwise 10 for an answer that ends
  a sentence (".", "!" or "?"), else 6 (cut off).
- nSFT's construction prompt (matrix/methods/nsft.py): five User/GPT turns from the REFERENCE. Every coloured
  shape the MODEL ANSWER names that the reference lacks gets "Is there a <colour> <shape> in the image?
  No."; then reference objects are asked about: with the error codebook in the prompt, their colour
  ("What color is the <shape> at the <position>?"), place ("Where is the <colour> <shape>?") and
  existence in turn; without it, existence only (the codebook is what points at attributes and
  locations). Turns repeat from the start when the reference has too few objects.
"""
from __future__ import annotations

import re
import threading
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from matrix.benchmarks.judge import JudgeError, JudgeReply, Prompt, _messages
from matrix.benchmarks.prompts import SHORT_ANSWER_SUFFIX

# The words the shapes world writes its prompts and answers with (`matrix/world/scene.py`, `language.py`;
# tests/benchmarks/test_reference_judge.py checks they agree). The rules read text: they need the
# world's words, not the world, which no benchmark module imports.
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
NUMBER_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
_WORD = re.compile(r"[a-z0-9]+")
_DIGIT = {w: str(n) for n, w in NUMBER_WORDS.items()}
_STOP = {"a", "an", "the", "is", "are", "there", "of", "in", "at", "and", "it", "image", "picture", "one"}


def _words(text: str) -> list[str]:
    """Lower-case words, number words as digits, plural shape names singular."""
    out = []
    for w in _WORD.findall(text.lower()):
        w = _DIGIT.get(w, w)
        if w.endswith("s") and w[:-1] in SHAPES:
            w = w[:-1]
        elif w.endswith("es") and w[:-2] in SHAPES:
            w = w[:-2]
        out.append(w)
    return out


def _contains(haystack: list[str], needle: list[str]) -> bool:
    it = iter(haystack)
    return all(any(w == h for h in it) for w in needle)


def grade_mmvet(truth: str, prediction: str) -> float:
    said = _words(prediction)
    numbers = [w for w in said if w.isdigit()]
    best = 0.0
    for alternative in truth.split("<OR>"):
        parts = [_words(p) for p in alternative.split("<AND>")]
        parts = [p for p in parts if p]
        if not parts:
            continue
        if len(parts) == 1 and len(parts[0]) == 1 and parts[0][0].isdigit() and numbers and parts[0][0] not in numbers:
            continue  # a different number: wrong, whatever else it says
        best = max(best, sum(_contains(said, p) for p in parts) / len(parts))
    return round(best, 1)


def _named_objects(words: list[str]) -> tuple[set[str], set[tuple[str, str]]]:
    shapes = {w for w in words if w in SHAPES}
    coloured = {(a, b) for a, b in zip(words, words[1:]) if a in COLOURS and b in SHAPES}
    return shapes, coloured


def grade_mmhal(contents: str, question: str, standard: str, response: str) -> int:
    # Objects the question or the standard answer name may be repeated (e.g. to deny them).
    have_shapes, have_coloured = _named_objects(_words(" , ".join([contents.replace(",", " , "), question, standard])))
    said = _words(response)
    shapes, coloured = _named_objects(said)
    hallucinates = bool(shapes - have_shapes) or bool(coloured - have_coloured)
    wanted = [w for w in _words(standard) if w not in _STOP] or _words(standard)
    found = sum(w in said for w in wanted) / len(wanted) if wanted else 0.0
    informative = 2 if found == 1.0 else 1 if found > 0 else 0
    return (3 + informative) if not hallucinates else informative


def grade_indomain(question: str, reference: str, answer: str) -> tuple[int, int]:
    said = _words(answer)
    if not said:
        return 0, 0
    have_shapes, have_coloured = _named_objects(_words(f"{reference} , {question}"))
    shapes, coloured = _named_objects(said)
    wanted = [w for w in _words(reference) if w not in _STOP] or _words(reference)
    found = sum(w in said for w in wanted) / len(wanted) if wanted else 0.0
    accuracy = 10 * found / (2 if (shapes - have_shapes) or (coloured - have_coloured) else 1)
    if SHORT_ANSWER_SUFFIX.strip() in question:
        follows = 10 if len(answer.split()) <= 4 else 4
    else:
        follows = 10 if answer.rstrip().endswith((".", "!", "?")) else 6
    return follows, int(Decimal(accuracy).quantize(Decimal(1), rounding=ROUND_HALF_UP))


_PLACED = re.compile(r"\b(" + "|".join(COLOURS) + r") (" + "|".join(SHAPES) + r")(?:e?s)?(?: (?:at the|in the) ([a-z ]+?))?(?=[.,;]| and |$)")


def write_nsft(reference: str, answer: str, codebook: bool, turns: int = 5) -> str:
    objects = []  # (colour, shape, position or None), in reference order, once each
    for colour, shape, position in _PLACED.findall(reference.lower()):
        if (colour, shape) not in [(c, s) for c, s, _ in objects]:
            objects.append((colour, shape, position.strip() or None))
    if not objects:
        raise JudgeError(f"the reference judge finds no coloured shape in this nSFT reference: {reference[:200]!r}")
    _, have = _named_objects(_words(reference))
    _, said = _named_objects(_words(answer))
    pairs = [(f"Is there a {c} {s} in the image?", "No.") for c, s in sorted(said - have)]
    asks = []
    for colour, shape, position in objects:
        if codebook and position:
            where = "in the center" if position == "center" else f"at the {position}"
            asks.append((f"What color is the {shape} {where}?", f"It is {colour}."))
            asks.append((f"Where is the {colour} {shape}?", f"It is {where}."))
        asks.append((f"Is there a {colour} {shape} in the image?", "Yes."))
    while len(pairs) < turns:
        pairs += asks[: turns - len(pairs)]
    errors = ", ".join(f"{c} {s}" for c, s in sorted(said - have)) or "none"
    return f"Errors: {errors}\n" + "\n".join(f"User: {q}\nGPT: {a}" for q, a in pairs[:turns])


_NSFT = re.compile(r"REFERENCE: (.*?)\n\nMODEL ANSWER: (.*?)\n\n", re.S)
_INDOMAIN = re.compile(r"Question: (.*)\nReference answer: (.*)\nAnswer: (.*)\Z", re.S)
_MMHAL = re.compile(r"Image contents: (.*)\nQuestion: (.*)\nStandard answer: (.*)\nResponse: (.*)\Z", re.S)


class ReferenceJudge:
    """The `Judge` interface (complete, describe, usage, check, close) answered by the rules above."""

    def __init__(self, spec: Any = None):
        self.model = getattr(spec, "model", None) or "shapes-reference"
        self._lock = threading.Lock()
        self.calls = 0

    def __repr__(self) -> str:
        return f"ReferenceJudge(model={self.model!r})"

    def describe(self) -> dict[str, Any]:
        return {"provider": "reference", "model": self.model, "rules": "matrix/benchmarks/reference_judge.py"}

    def usage(self) -> dict[str, Any]:
        with self._lock:
            return {"model": self.model, "calls": self.calls, "errors": 0, "cached_hits": 0,
                    "prompt_tokens": 0, "completion_tokens": 0}

    def check(self) -> list[str]:
        return [self.model]

    def close(self) -> None:
        pass

    def __enter__(self) -> "ReferenceJudge":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def complete(self, prompts: list[Prompt], *, temperature: float = 0.0, max_tokens: int = 1024,
                 stop: list[str] | None = None, attempt: int = 0,
                 parse=None) -> list[JudgeReply]:  # parse: the Judge's cache rule; rules cache nothing
        replies = [JudgeReply(self._grade(_messages(p)[-1]["content"]), 0, 0, cached=False) for p in prompts]
        with self._lock:
            self.calls += len(prompts)
        return replies

    def _grade(self, prompt: str) -> str:
        if m := _MMHAL.search(prompt):
            return f"Graded by the reference rules.\nRating: {grade_mmhal(*m.groups())}"
        if (found := _NSFT.findall(prompt)) and "QUESTION: " in prompt:  # one image: all its exchanges
            return write_nsft(" ".join(r for r, _ in found), " ".join(a for _, a in found),
                              codebook="Instance level:" in prompt)
        if m := _INDOMAIN.search(prompt):
            follows, accuracy = grade_indomain(*m.groups())
            return f"Graded by the reference rules.\nInstruction following: {follows}\nAccuracy: {accuracy}"
        if prompt.endswith(" | "):
            # MM-Vet's sample line "question | truth | prediction | " ends the prompt; the prediction
            # may hold newlines, so widen the tail a line at a time until it has the four fields.
            pos = len(prompt)
            while (pos := prompt.rfind("\n", 0, pos)) >= 0:
                fields = prompt[pos + 1 :].split(" | ")
                if len(fields) >= 4:
                    return f"{grade_mmvet(fields[1], ' | '.join(fields[2:-1])):.1f}"
        raise JudgeError(
            "the reference judge reads only the synthetic world's MM-Vet, MMHal, in-domain and nSFT prompts; "
            f"this one it cannot read: {prompt[-200:]!r}"
        )
