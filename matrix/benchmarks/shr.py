"""SHR (sentence-level hallucination ratio, HA-DPO): detailed descriptions judged sentence by sentence.

Files, under the eval folder (HA-DPO's `--shr-path` and `--vg-path`, with Visual Genome inside SHR's):

- `shr/val_images_final.json`: the evaluated images, a JSON list of `{"image_id", ...}`;
- `shr/shr_factual_part1.jsonl` and (optional) `shr/shr_factual_part2.jsonl`: one `{"<image_id>": [facts]}`
  per line, extra facts about an image for the judge;
- `shr/VG/image_data.json`: Visual Genome's `[{"image_id", "url", "width", "height"}]`; the image file is
  `shr/VG/<url's folder>/<url's file name>` (e.g. `VG_100K/2.jpg`), as HA-DPO resolves it;
- `shr/VG/region_descriptions.json`: Visual Genome's `[{"id", "regions": [{"image_id", "phrase", "x", "y",
  "width", "height"}]}]`.

Each image is asked "Describe this image in detail." HA-DPO decodes it with conv `llava_v1`, beam
search (`num_beams=5`) and `max_new_tokens=512`; the class says so (`conversation`, `num_beams`,
`max_new_tokens`), and a runner that cannot beam-search decodes greedily.

Grading (HA-DPO's `shr_eval/shr_utils.py` and `gpt_utils.py` rules): the response is cut into
sentences at "." (`sentences`: stripped, empty ones dropped, and a sentence dropped when it equals or
is contained in an earlier one); the judge gets the region descriptions as `[x1, y1, x2, y2]: phrase`
lines (box corners as fractions of the image size, two decimals), the facts one per line, and the
sentences as "1. sentence" lines, at temperature 0.7, max_tokens 800, stop "###". A reply without
"Judgement" (case as written) is asked again, a fresh sample each time; HA-DPO asks until it has one,
we stop after five and count the image in `unparsed`. The reply is read by `parse_judgement`, HA-DPO's
`post_process_no_revise`: the non-empty lines after the first line holding "Judgement:", each with its
first word (the number) dropped, the label being the text before the first ":", lowercased. When their
number differs from the number of sentences, every sentence of the image is unlabelled; a label that
is not correct / hallucination / cannot judge is unlabelled too. Unlabelled sentences are left out of
the ratio, as in HA-DPO. An image whose judge prompt exceeds 15,000 characters is skipped, as HA-DPO
skips it (`skipped`; it counts nowhere else).

Metrics: `shr` = hallucinated sentences / labelled sentences x100 (HA-DPO's `hal_sents_ratio`, the
number papers print), the two counts, `sentences`, `unlabelled`, `unparsed`, `skipped`, and per image
`sentences_per_image`, `hal_sentences_per_image`.

The judge template is ours (not comparable with published numbers). HA-DPO's `GPT_JUDGE_PROMPT` can be
used by saving its text to a file and naming it in the spec (`benchmarks: [{id: shr, template: FILE}]`,
or `SHR(template_path=...)` in code): a Python format string with three positional `{}` fields, in
order: region descriptions, facts, numbered sentences, filled exactly as HA-DPO fills it. The file's
content is part of the scoring stage's key.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from matrix.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    GradingTemplate,
    BenchmarkFileError,
    Sample,
    Scored,
    check_answers,
    ratio,
    read_jsonl,
    image_file,
    require,
)
from matrix.benchmarks.prompts import DETAIL_PROMPT

IMAGES_FILE = "val_images_final.json"
FACT_FILES = ("shr_factual_part1.jsonl", "shr_factual_part2.jsonl")
VG = "VG"
PROMPT = DETAIL_PROMPT
LABELS = ("cannot judge", "hallucination", "correct")
MARKER = "Judgement"  # shr_eval.py asks again until the reply holds it (case-sensitive)
LINE_MARKER = "Judgement:"  # post_process_no_revise reads the lines after the first line holding this
ATTEMPTS = 5  # replies asked for before giving up on an image (HA-DPO: no limit)
JUDGE_TEMPERATURE, JUDGE_MAX_TOKENS, JUDGE_STOP = 0.7, 800, ("###",)  # gpt_utils.py's decoding_args
MAX_PROMPT_CHARS = 15000  # shr_eval.py skips an image whose judge prompt is longer
TEMPLATE = """\
You check a detailed image description, sentence by sentence, for hallucination. You cannot see the
image. Instead you get what annotators wrote about regions of it (boxes [x1, y1, x2, y2], corners as
fractions of the image's width and height) and some facts about it. Label each numbered sentence:
- correct: everything it says about the image is supported by the regions or the facts;
- hallucination: it names an object, attribute, number or relation that they contradict or that
  is clearly not there;
- cannot judge: the annotations neither support nor contradict it (opinions, guesses about what is
  outside the image).

Regions:
{}
Facts:
{}
Sentences:
{}

Write a line "Judgement:" and after it exactly one line per sentence, nothing else, in the form
"<number>. <label>: <reason>", for example "1. correct: the regions show a red circle"."""


def sentences(response: str) -> list[str]:
    """HA-DPO's `get_model_cap` split: at ".", stripped; an empty piece, or one equal to or contained in
    an earlier sentence, is dropped (official: "A red circle. A red circle is big. Red circle." keeps
    the first two only, "Red circle" being inside the first)."""
    out: list[str] = []
    for piece in response.split("."):
        piece = piece.strip()
        if piece and not any(piece in earlier for earlier in out):
            out.append(piece)
    return out


def numbered(sents: list[str]) -> str:
    """The sentences as HA-DPO lists them for the judge: "1. first\n2. second\n"."""
    return "".join(f"{k}. {text}\n" for k, text in enumerate(sents, 1))


def parse_judgement(text: str | None, n: int) -> list[str | None] | None:
    """HA-DPO's `post_process_no_revise`: None when the reply lacks "Judgement" (asked again) or a line
    holding "Judgement:" (where HA-DPO's script would stop with an IndexError; we ask again). Else the
    non-empty lines after the first such line, each without its first space-separated word, non-empty
    ones kept; the label is each one's text before ":", lowercased. A count different from `n` gives
    `n` Nones (HA-DPO drops the whole image's labels). Labels outside LABELS are returned as read;
    they count as unlabelled."""
    if not text or MARKER not in text:
        return None
    lines = [line for line in text.split("\n") if line]
    at = next((i for i, line in enumerate(lines) if LINE_MARKER in line), None)
    if at is None:
        return None
    said = [" ".join(line.split(" ")[1:]).strip() for line in lines[at + 1:]]
    said = [x for x in said if x]
    if len(said) != n:
        return [None] * n
    return [x.split(":")[0].lower() for x in said]


def region_text(image: dict, regions: list[dict]) -> str:
    """HA-DPO's `get_desc`: "[x1, y1, x2, y2]: phrase\n" per region with a phrase, corners / image size
    rounded to 2 decimals."""
    w, h = image["width"], image["height"]
    out = ""
    for r in regions:
        box = [float("%.2f" % f) for f in (r["x"] / w, r["y"] / h, (r["x"] + r["width"]) / w,
                                            (r["y"] + r["height"]) / h)]
        if r["phrase"]:
            out += f"{box}: {r['phrase']}\n"
    return out


@BENCHMARKS.register("shr")
class SHR(GradingTemplate, Benchmark):
    id = "shr"
    headline = "shr"
    max_new_tokens = 512
    num_beams: ClassVar[int] = 5
    conversation: ClassVar[str] = "llava_v1"
    needs_judge = True
    default_template = TEMPLATE
    template_what = "an SHR judge template (a format string with three positional {} fields)"

    # ---- files ---------------------------------------------------------------------------------------
    def load(self, root: Path, limit: int | None = None, images: bool = True) -> list[Sample]:
        base = Path(root) / "shr"
        entries = _json(base / IMAGES_FILE, 'SHR images, a JSON list of {"image_id"}')
        data = {d["image_id"]: d for d in _json(base / VG / "image_data.json", "Visual Genome image_data.json")}
        regions: dict[int, list[dict]] = {}
        for entry in _json(base / VG / "region_descriptions.json", "Visual Genome region_descriptions.json"):
            if entry.get("regions"):
                regions[entry["regions"][0]["image_id"]] = entry["regions"]
        facts: dict[str, list[str]] = {}
        for i, name in enumerate(FACT_FILES):
            path = base / name
            if i > 0 and not path.exists():
                continue
            for row in read_jsonl(path, 'SHR facts, one {"<image_id>": [facts]} per line'):
                facts.update({str(k): list(v) for k, v in row.items()})
        samples = []
        for n, entry in enumerate(entries if limit is None else entries[:limit]):
            image_id = entry.get("image_id") if isinstance(entry, dict) else None
            if image_id is None:
                raise BenchmarkFileError(f"{base / IMAGES_FILE}: entry {n} has no image_id")
            if image_id not in data:
                raise BenchmarkFileError(f"{base / VG / 'image_data.json'}: no image {image_id}")
            folder, file = data[image_id]["url"].split("/")[-2:]
            image = image_file(base / VG / folder / file, f"the Visual Genome image {image_id}", images)
            samples.append(Sample(str(image_id), image, PROMPT, {
                "image_id": image_id, "regions": region_text(data[image_id], regions.get(image_id, [])),
                "facts": "".join(f"{fact}\n" for fact in facts.get(str(image_id), []))}, official_id=image_id))
        return samples

    # ---- grading -------------------------------------------------------------------------------------
    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        if judge is None:
            raise ValueError("shr is judged by an LLM: pass judge=Judge(...)")
        template = self.template()
        split = [sentences(a) for a in answers]
        prompts = [template.format(s.meta["regions"], s.meta["facts"], numbered(sents))
                   for s, sents in zip(samples, split)]
        skipped = [len(p) > MAX_PROMPT_CHARS for p in prompts]
        labels: list[list[str | None] | None] = [None] * len(samples)
        replies: list[list[str]] = [[] for _ in samples]
        # nothing to judge in an empty response (HA-DPO asks, and any reply leaves it no sentence)
        todo = [i for i in range(len(samples)) if split[i] and not skipped[i]]
        for i in range(len(samples)):
            if not split[i]:
                labels[i] = []
        for attempt in range(ATTEMPTS):
            if not todo:
                break
            got = judge.complete([prompts[i] for i in todo], temperature=JUDGE_TEMPERATURE,
                                 max_tokens=JUDGE_MAX_TOKENS, stop=list(JUDGE_STOP), attempt=attempt,
                                 parse=lambda text: parse_judgement(text, 0))  # None: no "Judgement" at all
            for i, reply in zip(todo, got):
                replies[i].append(reply.text)
                labels[i] = parse_judgement(reply.text, len(split[i]))
            todo = [i for i in todo if labels[i] is None]
        per_sample = []
        for i, (s, answer) in enumerate(zip(samples, answers)):
            got = labels[i] if labels[i] is not None else [None] * len(split[i])
            per_sample.append({"question_id": s.question_id, "answer": answer, "sentences": split[i],
                               "labels": got, "hallucinated": sum(x == "hallucination" for x in got),
                               "judged": sum(x in LABELS for x in got), "judge_replies": replies[i],
                               "unparsed": labels[i] is None and not skipped[i], "skipped": skipped[i]})
        return Scored(self.aggregate(per_sample), per_sample)

    @staticmethod
    def aggregate(rows: list[dict]) -> dict[str, float]:
        skipped = sum(bool(r.get("skipped")) for r in rows)
        rows = [r for r in rows if not r.get("skipped")]  # HA-DPO: a skipped image counts nowhere
        hal = sum(r["hallucinated"] for r in rows)
        judged = sum(r["judged"] for r in rows)
        total = sum(len(r["sentences"]) for r in rows)
        return {"shr": 100 * ratio(hal, judged), "hallucinated_sentences": float(hal),
                "judged_sentences": float(judged), "sentences": float(total),
                "unlabelled": float(total - judged), "unparsed": float(sum(r["unparsed"] for r in rows)),
                "skipped": float(skipped), "sentences_per_image": ratio(total, len(rows)),
                "hal_sentences_per_image": ratio(hal, len(rows))}


def _json(path: Path, what: str):
    require(path, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"{path}: not valid JSON ({e.msg}); expected {what}") from None
    if not isinstance(data, list):
        raise BenchmarkFileError(f"{path}: expected a JSON list ({what})")
    return data
