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

Grading (HA-DPO's `shr_eval` rules, our own prompt): the response is cut into sentences at "." and
repeated sentences are dropped; the judge gets the image's region descriptions, its facts and the
numbered sentences, and labels each sentence correct / hallucination / cannot judge after a line
"Judgement:". A reply without "Judgement" is asked again (HA-DPO asks until it has one); we ask at
temperature 0, then 0.5, 1.0, 1.5 and 2.0, and after five such replies give up on the image: its
sentences count as unlabelled and the image in `unparsed`. A sentence with no label, or more than one,
is unlabelled, and, as in HA-DPO, left out of the denominator.

Metrics: `shr` = hallucinated sentences / sentences with a label x100 (HA-DPO's `hal_sents_ratio`, the
number papers print), the two counts, `sentences`, `unlabelled`, `unparsed`, and per image
`sentences_per_image`, `hal_sentences_per_image`.

The judge template is ours. Another one can be used by saving it to a file and naming it in the spec
(`benchmarks: [{id: shr, template: FILE}]`, or `SHR(template_path=...)` in code): a Python format string
with three positional `{}` fields, in order: region descriptions, facts, numbered sentences (HA-DPO's
layout); its replies must then still have "Judgement" and lines `<n>: <label>`. The file's content is
part of the scoring stage's key.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import ClassVar

from benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    GradingTemplate,
    BenchmarkFileError,
    Sample,
    Scored,
    check_answers,
    ratio,
    read_jsonl,
    require,
)
from matrix.world import language
from matrix.world.scene import GRID, SHAPES, Scene, draw_scene, render

IMAGES_FILE = "val_images_final.json"
FACT_FILES = ("shr_factual_part1.jsonl", "shr_factual_part2.jsonl")
VG = "VG"
PROMPT = language.DETAIL_PROMPT
LABELS = ("cannot judge", "hallucination", "correct")
MARKER = "judgement"
TEMPERATURES = (0.0, 0.5, 1.0, 1.5, 2.0)  # one per attempt at a reply with the marker
JUDGE_MAX_TOKENS = 1024
IMAGE_SIZE = 48

TEMPLATE = """\
You check a detailed image description, sentence by sentence, for hallucination. You cannot see the
image. Instead you get what annotators wrote about regions of it (with boxes: x, y, width, height in
pixels) and some facts about it. Label each numbered sentence:
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

Give a short reason per sentence if you need to, then write a line "Judgement:" followed by one line
per sentence in the form "<number>: <label>", for example "1: correct"."""

_LINE = re.compile(r"^\s*(?:sentence\s*)?(\d+)\s*[:.)\-]\s*(.*)$", re.I)


def sentences(response: str) -> list[str]:
    """HA-DPO's split: at ".", stripped, empty pieces and repeated sentences dropped (first kept)."""
    out: list[str] = []
    for piece in response.split("."):
        piece = piece.strip()
        if piece and piece not in out:
            out.append(piece)
    return out


def parse_judgement(text: str | None, n: int) -> list[str | None] | None:
    """The label of each of `n` sentences from the lines after the last "Judgement", or None when the
    reply has no "Judgement". A sentence without exactly one label gets None."""
    if not text or MARKER not in text.lower():
        return None
    tail = text[text.lower().rindex(MARKER) + len(MARKER):]
    labels: list[str | None] = [None] * n
    seen: set[int] = set()
    for line in tail.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        index = int(match.group(1)) - 1
        said = match.group(2).lower()
        found = [label for label in LABELS if re.search(rf"\b{label}\b", said)]
        if 0 <= index < n:
            labels[index] = found[0] if len(found) == 1 and index not in seen else None
            seen.add(index)
    return labels


def region_text(image: dict, regions: list[dict]) -> str:
    lines = [f"image size {image.get('width')}x{image.get('height')}"]
    lines += [f"[{r['x']}, {r['y']}, {r['width']}, {r['height']}] {r['phrase'].strip()}" for r in regions]
    return "\n".join(lines)


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
    def synthesize(self, root: Path, size: int, seed: int) -> None:
        """`size` images; one region per object, facts about counts and absent shapes (split across the
        two fact files)."""
        rng = random.Random(f"shr:{seed}")
        base = Path(root) / "shr"
        (base / VG / "VG_100K").mkdir(parents=True, exist_ok=True)
        images, image_data, regions, facts = [], [], [], ([], [])
        cell = IMAGE_SIZE // GRID
        for i in range(size):
            scene = draw_scene(rng)
            image_id = 1000 + i
            render(scene, size=IMAGE_SIZE).save(base / VG / "VG_100K" / f"{image_id}.png")
            images.append({"image_id": image_id})
            image_data.append({"image_id": image_id, "url": f"https://example.invalid/VG_100K/{image_id}.png",
                               "width": IMAGE_SIZE, "height": IMAGE_SIZE, "scene": scene.to_json()})
            regions.append({"id": image_id, "regions": [
                {"region_id": image_id * 10 + k, "image_id": image_id, "phrase": language.describe(o),
                 "x": o.col * cell, "y": o.row * cell, "width": cell, "height": cell}
                for k, o in enumerate(scene.objects)]})
            facts[i % 2].append({str(image_id): _facts(scene)})
        (base / IMAGES_FILE).write_text(json.dumps(images))
        (base / VG / "image_data.json").write_text(json.dumps(image_data))
        (base / VG / "region_descriptions.json").write_text(json.dumps(regions))
        for name, rows in zip(FACT_FILES, facts):
            (base / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    def load(self, root: Path, limit: int | None = None) -> list[Sample]:
        base = Path(root) / "shr"
        images = _json(base / IMAGES_FILE, 'SHR images, a JSON list of {"image_id"}')
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
        for n, entry in enumerate(images if limit is None else images[:limit]):
            image_id = entry.get("image_id") if isinstance(entry, dict) else None
            if image_id is None:
                raise BenchmarkFileError(f"{base / IMAGES_FILE}: entry {n} has no image_id")
            if image_id not in data:
                raise BenchmarkFileError(f"{base / VG / 'image_data.json'}: no image {image_id}")
            folder, file = data[image_id]["url"].split("/")[-2:]
            image = require(base / VG / folder / file, f"the Visual Genome image {image_id}")
            samples.append(Sample(str(image_id), image, PROMPT, {
                "image_id": image_id, "regions": region_text(data[image_id], regions.get(image_id, [])),
                "facts": "\n".join(facts.get(str(image_id), []))}))
        return samples

    # ---- grading -------------------------------------------------------------------------------------
    def score(self, samples: list[Sample], answers: list[str], judge=None) -> Scored:
        check_answers(samples, answers)
        if judge is None:
            raise ValueError("shr is judged by an LLM: pass judge=Judge(...)")
        template = self.template()
        split = [sentences(a) for a in answers]
        prompts = [template.format(s.meta["regions"], s.meta["facts"],
                                   "\n".join(f"{k}. {text}." for k, text in enumerate(sents, 1)))
                   for s, sents in zip(samples, split)]
        labels: list[list[str | None] | None] = [None] * len(samples)
        replies: list[list[str]] = [[] for _ in samples]
        todo = [i for i in range(len(samples)) if split[i]]  # nothing to judge in an empty response
        for i in range(len(samples)):
            if not split[i]:
                labels[i] = []
        for temperature in TEMPERATURES:
            if not todo:
                break
            got = judge.complete([prompts[i] for i in todo], temperature=temperature, max_tokens=JUDGE_MAX_TOKENS,
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
                               "judged": sum(x is not None for x in got), "judge_replies": replies[i],
                               "unparsed": labels[i] is None})
        return Scored(self.aggregate(per_sample), per_sample)

    @staticmethod
    def aggregate(rows: list[dict]) -> dict[str, float]:
        hal = sum(r["hallucinated"] for r in rows)
        judged = sum(r["judged"] for r in rows)
        total = sum(len(r["sentences"]) for r in rows)
        return {"shr": 100 * ratio(hal, judged), "hallucinated_sentences": float(hal),
                "judged_sentences": float(judged), "sentences": float(total),
                "unlabelled": float(total - judged), "unparsed": float(sum(r["unparsed"] for r in rows)),
                "sentences_per_image": ratio(total, len(rows)), "hal_sentences_per_image": ratio(hal, len(rows))}


def _facts(scene: Scene) -> list[str]:
    n = len(scene.objects)
    out = [f"There {'is' if n == 1 else 'are'} exactly {language.NUMBER_WORDS[n]} "
           f"{'shape' if n == 1 else 'shapes'} in the image."]
    out += [f"There is no {s} in the image." for s in SHAPES if s not in scene.shapes()]
    return out


def _json(path: Path, what: str):
    require(path, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"{path}: not valid JSON ({e.msg}); expected {what}") from None
    if not isinstance(data, list):
        raise BenchmarkFileError(f"{path}: expected a JSON list ({what})")
    return data
