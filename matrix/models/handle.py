"""A loaded vision-language model with everything needed to feed it.

`load(model_dir)` gives a `ModelHandle`: model, tokenizer, image processor and conversation template,
with helpers that turn LLaVA JSON conversations into training tensors and questions into batched,
left-padded generation. A model directory written by matrix carries `matrix_model.json` naming its
family and template; an external llava-hf checkpoint gets them from the spec. What depends on the
architecture (loading, image-token counts, vision inputs) is the model family's
(`matrix.models.family`): this module holds what every family shares.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from matrix.models.conversation import (
    IGNORE_INDEX,
    IMAGE_PLACEHOLDER,
    Template,
    get_template,
    tokenize_conversation,
    tokenize_prompt,
)

if TYPE_CHECKING:
    from matrix.models.family import ModelFamily

META_FILE = "matrix_model.json"
AUTO = "auto"  # a batch size found while answering: the largest that fits, from AUTO_BATCH_START down
AUTO_BATCH_START = 64


@dataclass
class ModelHandle:
    model: object
    tokenizer: object
    image_processor: object
    template: Template
    image_token_id: int
    num_image_tokens: int  # per image where the count is fixed (LLaVA-1.5); 0 where it depends on the size
    processor: object = None
    family: "ModelFamily | None" = None  # what is architecture-specific; None: LLaVA-1.5's (`llava`)
    batch_size: int | str | None = None  # the batch size of the last `generate` (recorded as the stage's runtime)

    def __post_init__(self) -> None:
        if self.family is None:
            from matrix.models.family import FAMILIES

            self.family = FAMILIES.get("llava")()

    @property
    def anyres(self) -> bool:
        """Whether an image's token count depends on its size (LLaVA-NeXT)."""
        return self.family.anyres

    # ---- inputs -------------------------------------------------------------------------------
    def image_tokens(self, size: tuple[int, int] | None = None) -> int:
        """Image tokens of one image of `size` (width, height); LLaVA-1.5's count is fixed."""
        return self.family.image_tokens(self, size)

    def vision_inputs(self, images: list) -> dict:
        """What the model's forward takes for `images`: pixel values (LLaVA-NeXT: per-image tiles, and
        `image_sizes`)."""
        return self.family.vision_inputs(self, images)

    def pixel_values(self, images: list) -> "torch.Tensor":  # noqa: F821
        return self.vision_inputs(images)["pixel_values"]

    def encode_prompt(self, question: str, image_size: tuple[int, int] | None = None,
                      answer_start: str = "") -> list[int]:
        """Generation prompt ids; the image placeholder goes first unless the question places it.
        `answer_start`: the beginning of the answer, tokenised with the prompt as one text (as training
        tokenises a conversation; a separately tokenised " text" gets a stray `▁` from LLaMA's tokenizer)."""
        if IMAGE_PLACEHOLDER not in question:
            question = f"{IMAGE_PLACEHOLDER}\n{question}"
        text = self.template.prompt(question) + (f" {answer_start}" if answer_start else "")
        return tokenize_prompt(self.tokenizer, text, self.image_token_id, self.image_tokens(image_size))

    def encode_conversation(self, conversations: list[dict], image_size: tuple[int, int] | None = None
                            ) -> tuple[list[int], list[int]]:
        n = self.image_tokens(image_size) if any(IMAGE_PLACEHOLDER in t["value"] for t in conversations) else 0
        return tokenize_conversation(self.tokenizer, self.template, conversations, self.image_token_id, n)

    # ---- generation ---------------------------------------------------------------------------
    def generate(
        self,
        images: list,
        questions: list[str],
        max_new_tokens: int,
        batch_size: int | str = 16,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        pixel_transform=None,
        num_beams: int = 1,
        by_length: bool = True,
    ) -> list[str]:
        """Answer each (image, question) with left-padded batches; returns decoded answers in order.

        `pixel_transform`, if given, maps the normalised pixel tensor of a batch to a new one (SeVa's
        augmentations act there). An image of None asks the question as text only (ScienceQA has such
        questions), batched separately from the questions with images. `num_beams > 1`: beam search
        (SHR decodes with 5 beams). `by_length`: batch prompts of similar length together (greedy and
        beam search only, whose answers do not depend on the batch; matrix/models/batching.py).
        `batch_size="auto"`: the largest that fits in memory (see `_batches`).
        """
        import torch

        self.batch_size = batch_size
        if any(im is None for im in images):
            with_image = [i for i, im in enumerate(images) if im is not None]
            text_only = [i for i, im in enumerate(images) if im is None]
            out: list[str] = [""] * len(questions)
            common = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=do_sample,
                          temperature=temperature, top_p=top_p, seed=seed, num_beams=num_beams)
            if with_image:
                answers = self.generate([images[i] for i in with_image], [questions[i] for i in with_image],
                                        pixel_transform=pixel_transform, by_length=by_length, **common)
                for i, a in zip(with_image, answers):
                    out[i] = a
            for i, a in zip(text_only, self._generate_text([questions[i] for i in text_only], **common)):
                out[i] = a
            return out

        if seed is not None:
            torch.manual_seed(seed)
        self.model.eval()
        def encode(q, im):
            return self.encode_prompt(q, im.size)

        def run(ims, qs):
            return self._batches(ims, qs, max_new_tokens, batch_size, do_sample, temperature, top_p,
                                 pixel_transform, encode, num_beams)

        if by_length and not do_sample and pixel_transform is None:
            from matrix.models.batching import in_length_order

            return in_length_order(run, [len(encode(q, im)) for q, im in zip(questions, images)], images, questions)
        return run(images, questions)

    def _generate_text(self, questions: list[str], max_new_tokens: int, batch_size: int | str, do_sample: bool,
                       temperature: float, top_p: float, seed: int | None, num_beams: int = 1) -> list[str]:
        def encode(q: str, _image=None) -> list[int]:
            text = self.template.prompt(q)
            ids = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
            return ids + self.tokenizer(text, add_special_tokens=False)["input_ids"]

        if seed is not None:
            import torch

            torch.manual_seed(seed)
        return self._batches([None] * len(questions), questions, max_new_tokens, batch_size, do_sample,
                             temperature, top_p, None, encode, num_beams)

    def _batches(self, images, questions, max_new_tokens, batch_size, do_sample, temperature, top_p,
                 pixel_transform, encode, num_beams: int = 1) -> list[str]:
        """Consecutive slices of `batch_size` questions. `batch_size="auto"`: start at AUTO_BATCH_START
        and halve on an out-of-memory error (accelerate's test of the error's message: CUDA, CPU, ...),
        retrying only the batch that failed; the size that worked is kept for the rest (callers order
        prompts longest first, so the first batch is the widest); the largest batch run is recorded as
        `self.batch_size`."""
        from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size

        self.model.eval()
        auto = batch_size == AUTO
        size = AUTO_BATCH_START if auto else int(batch_size)
        answers: list[str] = []
        start = largest = 0
        while start < len(questions):
            n = min(size, len(questions) - start)
            try:
                answers += self._batch(images[start : start + n], questions[start : start + n], max_new_tokens,
                                       do_sample, temperature, top_p, pixel_transform, encode, num_beams)
            except RuntimeError as e:
                if not (auto and n > 1 and should_reduce_batch_size(e)):
                    raise
                clear_device_cache(garbage_collection=True)
                size = n // 2
                continue
            start += n
            largest = max(largest, n)
        if auto:
            self.batch_size = largest
        return answers

    def _batch(self, ims, qs, max_new_tokens, do_sample, temperature, top_p, pixel_transform, encode,
               num_beams: int) -> list[str]:
        """One left-padded batch through `model.generate`; its decoded new tokens."""
        import torch

        pad = self.tokenizer.pad_token_id
        encoded = [encode(q, im) for q, im in zip(qs, ims)]
        width = max(len(e) for e in encoded)
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        for i, e in enumerate(encoded):
            input_ids[i, width - len(e) :] = torch.tensor(e)
            attention[i, width - len(e) :] = 1
        kwargs = dict(do_sample=do_sample)
        if ims[0] is not None:
            vision = self.vision_inputs(ims)
            if pixel_transform is not None:
                vision["pixel_values"] = pixel_transform(vision["pixel_values"])
            kwargs.update({k: v.to(self.model.device) for k, v in vision.items()})
        if num_beams > 1:
            kwargs["num_beams"] = num_beams
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids.to(self.model.device),
                attention_mask=attention.to(self.model.device),
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id,
                **kwargs,
            )
        return [t.strip() for t in self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]


def collate(handle: ModelHandle, examples: list[tuple[list[int], list[int]]], max_length: int):
    """Right-pad (ids, labels) pairs into input_ids / attention_mask / labels tensors, truncating."""
    import torch

    examples = [(ids[:max_length], labels[:max_length]) for ids, labels in examples]
    width = max(len(ids) for ids, _ in examples)
    pad = handle.tokenizer.pad_token_id
    input_ids = torch.full((len(examples), width), pad, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for i, (ids, lab) in enumerate(examples):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        labels[i, : len(lab)] = torch.tensor(lab)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def write_meta(model_dir: Path, family: str, template: str, **extra) -> None:
    (Path(model_dir) / META_FILE).write_text(json.dumps({"family": family, "template": template, **extra}, indent=1))


def read_meta(model_dir: Path) -> dict:
    path = Path(model_dir) / META_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def load(model_dir: Path, template: str | None = None, dtype: str = "float32", device: str = "cpu",
         family: str | None = None) -> ModelHandle:
    """Load a model directory (local files only) onto `device` in `dtype`: its family (`family`, else the
    one recorded beside it, else the one of its config's model_type) does the loading."""
    from matrix.models.family import family_for

    model_dir = Path(model_dir)
    fam = family_for(model_dir, family)
    model, processor = fam.load(model_dir, device=device, dtype=dtype)
    template_name = template or read_meta(model_dir).get("template") or "vicuna_v1"
    return ModelHandle(
        model=model,
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
        template=get_template(template_name),
        image_token_id=model.config.image_token_id,
        num_image_tokens=fam.num_image_tokens(model),
        processor=processor,
        family=fam,
    )
