"""The method plug-in contract and the LLaVA-JSON helpers every method's construction uses.

A method turns dataset records (LLaVA JSON: `{"id", "image", "conversations": [...]}`) and the
base model's responses into training examples, and names the objective that trains on them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from matrix.models.conversation import IMAGE_PLACEHOLDER
from matrix.registry import METHODS  # noqa: F401  (the core's registry; methods register into it)

# generation kind -> item_id -> the model's answer (CSR's `sentences` kind: the item's search tree)
Responses = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Item:
    """One question of a record: the unit that generation answers and pair-building methods use."""

    item_id: str
    record_id: str
    image: str  # relative to the dataset's image root; "" for a text-only record
    question: str  # without the image placeholder; keeps a short-answer suffix
    answer: str  # the ground-truth answer (the gpt turn that follows)


def record_id(record: dict, index: int) -> str:
    return str(record["id"]) if "id" in record else str(index)


def clean_question(value: str) -> str:
    """Drop the image placeholder and the newline that joins it (LLaVA puts it first or last)."""
    return value.replace(IMAGE_PLACEHOLDER, "").strip()


def question_items(records: list[dict]) -> list[Item]:
    """One item per human turn that has an answer; item_id = "<record id>:<question number>".

    The question number counts human turns (0-based), so it stays stable however a record's
    turns are rendered. Duplicate record ids would make item ids ambiguous, so they are an error.
    """
    items: list[Item] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        rid = record_id(record, index)
        if rid in seen:
            raise ValueError(f"duplicate record id {rid!r}: item ids would collide")
        seen.add(rid)
        turns = record.get("conversations", [])
        question_no = 0
        for pos, turn in enumerate(turns):
            if turn.get("from") != "human":
                continue
            nxt = turns[pos + 1] if pos + 1 < len(turns) else None
            if nxt is not None and nxt.get("from") == "gpt":
                image = record.get("image") or ""
                items.append(Item(f"{rid}:{question_no}", rid, image, clean_question(turn["value"]), nxt["value"]))
            question_no += 1
    return items


def single_turn(question: str, answer: str, with_image: bool) -> list[dict]:
    """A one-question conversation, image placeholder first as in SeVa/SIMA pair files."""
    prompt = f"{IMAGE_PLACEHOLDER}\n{question}" if with_image else question
    return [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]


def preference_example(item: Item, chosen: str, rejected: str) -> dict:
    """SIMA's pair layout: shared human turn, chosen in `conversations`, rejected beside it."""
    ex: dict[str, Any] = {"id": item.item_id}
    if item.image:
        ex["image"] = item.image
    ex["conversations"] = single_turn(item.question, chosen, bool(item.image))
    ex["rejected_conversations"] = single_turn(item.question, rejected, bool(item.image))
    return ex


@dataclass
class Env:
    """What a construction step may use beyond records and responses (the construct stage fills it).

    `model()` loads the base model once (SIMA's self-critic); `judge` is a `matrix.benchmarks.judge.Judge`
    (nSFT's LLM path). Both are None/absent unless the method declares them in `needs`.
    """

    image_root: Path | None = None
    model_dir: Path | None = None
    template: str | None = None
    judge: Any = None
    seed: int = 0
    files: dict[str, Path] = field(default_factory=dict)  # `Method.input_files`, resolved
    # How the model runs (the stage's run-time settings): its family, dtype, device and answering batch.
    family: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    batch_size: int | str = 16  # or "auto" (matrix/models/handle.py)
    loaded: Any = field(default=None, repr=False)  # the handle once `model()` has loaded it

    def model(self):
        if self.loaded is None:
            if self.model_dir is None:
                raise ValueError("this construction step needs the base model, but none was given")
            from matrix.models.handle import load

            self.loaded = load(self.model_dir, template=self.template, dtype=self.dtype, device=self.device,
                               family=self.family)
        return self.loaded

    def image(self, rel: str):
        from PIL import Image

        if self.image_root is None:
            raise ValueError("this construction step needs the images, but no image root was given")
        with Image.open(Path(self.image_root) / rel) as im:
            return im.convert("RGB")


class Method:
    """Base class of a method plug-in; subclasses set the class attributes and `construct`.

    Use: `METHODS.get(name)().construct(records, responses, params, env)`.
    """

    id: ClassVar[str] = ""
    objective: ClassVar[str] = "none"  # "none" | "sft" | "dpo"
    responses: ClassVar[tuple[str, ...]] = ()  # generation kinds construct needs, e.g. ("greedy",)
    defaults: ClassVar[dict[str, Any]] = {}  # the paper's training hyper-parameters (spec `training` keys)
    # The paper's decode settings of its generate stages (spec `generation` keys), e.g. SIMA's 1024 new tokens.
    generation_defaults: ClassVar[dict[str, Any]] = {}
    version: ClassVar[str] = "1"  # bump when construct's output changes: part of the construct stage key
    # What construct needs besides records and responses: "model" (the base model), "judge" (the LLM judge).
    needs: ClassVar[tuple[str, ...]] = ()

    def generation_params(self, mode: str, params: dict, base_model: str) -> dict:
        """Extra parameters of the `generate` stage of response kind `mode` (e.g. SeVa's augmentation)."""
        return {}

    @classmethod
    def check_params(cls, params: dict) -> list[str]:
        """Problems with a spec's `params` for this method (each a message); none by default."""
        return []

    def input_files(self, params: dict) -> dict[str, Path]:
        """Local files or folders construct reads besides its stage inputs (CSR's CLIP model), by name; their
        path and a fingerprint join the construct stage's key, and construct finds them in `env.files`."""
        return {}

    def uses_judge(self, params: dict) -> bool:
        """Whether construct with these params may call the judge (then its model joins the stage key)."""
        return "judge" in self.needs

    # What a row evaluates. The stage graph asks these hooks instead of knowing any method by name; a
    # row that trains here evaluates its base model with its own checkpoint (the defaults below), a row
    # of work done elsewhere (`external`) names another model, checkpoint or answer files.
    @classmethod
    def evaluated_model(cls, params: dict) -> dict | None:
        """A whole model (a `base_models` entry's keys) the row evaluates instead of the cell's base model."""
        return None

    @classmethod
    def evaluated_checkpoint(cls, params: dict) -> Path | None:
        """A finished checkpoint applied to the cell's base model, instead of one this run trains."""
        return None

    @classmethod
    def answer_files(cls, params: dict) -> dict[str, Path]:
        """Answer files the row gives, by benchmark id: those benchmarks are scored, never answered."""
        return {}

    @classmethod
    def answers_questions(cls, params: dict) -> bool:
        """Whether the row has a model to answer the benchmarks it gives no answer file for."""
        return True

    def construct(
        self, records: list[dict], responses: Responses, params: dict, env: Env | None = None
    ) -> tuple[list[dict], dict]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<method {self.id} objective={self.objective}>"


# The schedule SeVa trains with (REFERENCE §1.1) and which GT-DPO / continual SFT reuse (§1.2, §1.5):
# LoRA 1024/2048 on the LLM with the projector trained in full, global batch 128 (8 GPUs x 16),
# lr 2e-6 cosine, warmup ratio 0.03, no weight decay, clip 1.0, length 2048, ZeRO-3 + bf16, seed 42.
SEVA_SCHEDULE: dict[str, Any] = {
    "lr": 2e-6,
    "epochs": 1,
    "batch_size": 128,
    "micro_batch_size": 16,
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "scheduler": "cosine",
    "max_length": 2048,
    "seed": 42,
    "bf16": True,
    "lora": {"r": 1024, "alpha": 2048, "dropout": 0.05},
    "train_projector": True,
    "deepspeed": {"stage": 3},
}

# SeVa's step 2 (data/step2/generate_with_aug.py:155-160): greedy, max_new_tokens=512.
SEVA_GENERATION: dict[str, Any] = {"max_new_tokens": 512}
