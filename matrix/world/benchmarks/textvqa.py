"""TextVQA's synthetic twin: `size` covers with a word or a digit drawn in PIL's default font, each given as
the reference OCR token, and ten annotators per question (mostly the word in varied spellings, two wrong)
in TextVQA's val annotation layout."""
from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from matrix.benchmarks.base import write_jsonl
from matrix.benchmarks.textvqa import IMAGE_DIR, NUMBERS, OCR_PREFIX, QUESTION_FILE, TRUTH_FILE
from matrix.world import language
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS
from matrix.world.scene import COLOURS


# ---- images: a word on a coloured cover ------------------------------------------------------------
WORDS = ("cat", "sun", "map", "box", "red", "jam", "cup", "owl", "ink", "zoo", "fig", "hat")
SYNTHETIC_NUMBERS = ("two", "three", "five", "seven")


def render_word(text: str, rng: random.Random, size: int = 48) -> Image.Image:
    cover = COLOURS[rng.choice(("yellow", "orange"))]  # light covers: black text stays legible
    img = Image.new("RGB", (size, size), tuple(rng.randint(225, 255) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    draw.rectangle([4, 10, size - 5, size - 11], fill=cover)
    font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top), text,
              fill=(0, 0, 0), font=font)
    return img


WORD_QUESTION = "What word is written on the cover?"


def word_prompt(word: str) -> str:
    """The question about a cover with `word` on it, with the OCR token as LLaVA's TextVQA prompt gives it."""
    return f"{WORD_QUESTION}\n{OCR_PREFIX}{word}"


@SYNTHETIC_BENCHMARKS.register("textvqa")
def synthesize(root: Path, size: int, seed: int) -> None:
    """`size` covers, each with a word or a digit drawn in PIL's default font and given as the
    reference OCR token. Ten annotators: mostly the word in varied spellings (case, article,
    number word for a digit), two of them wrong."""
    rng = random.Random(f"textvqa:{seed}")
    base = Path(root) / "textvqa"
    (base / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    rows, data = [], []
    for i in range(size):
        image_id = f"{i:04x}synthetic{seed:04d}"
        if i % 3 == 2:
            word = rng.choice(SYNTHETIC_NUMBERS)
            shown = NUMBERS[word]  # the digit is drawn; annotators write it either way
            question = "What number is written on the cover?"
            spellings = [shown, word, word.capitalize()]
        else:
            word = shown = rng.choice(WORDS)
            question = WORD_QUESTION
            spellings = [word, word.upper(), f"the {word}", f"{word}."]
        render_word(shown, rng).save(base / IMAGE_DIR / f"{image_id}.jpg", quality=95)
        wrong = [w for w in WORDS if w != word]
        answers = [rng.choice(spellings) for _ in range(8)] + rng.sample(wrong, 2)
        rng.shuffle(answers)
        rows.append({"question_id": image_id, "image": f"{image_id}.jpg",
                     "text": f"{question}\n{OCR_PREFIX}{shown}{language.SHORT_ANSWER_SUFFIX}"})
        data.append({"question": question, "image_id": image_id, "answers": answers,
                     "question_id": 30000 + i, "set_name": "val", "ocr_tokens": [shown]})
    write_jsonl(base / QUESTION_FILE, rows)
    (base / TRUTH_FILE).write_text(json.dumps({"dataset_type": "val", "dataset_name": "textvqa",
                                               "dataset_version": "0.5.1", "data": data}, indent=1))
