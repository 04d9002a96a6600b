"""Conversation templates (LLaVA's sep-style TWO) and the tokenisation that masks everything but answers.

A template turns LLaVA JSON conversations (`[{"from": "human"|"gpt", "value": ...}, ...]`) into the
exact prompt string a model was trained with, and into (input_ids, labels) for training where only
assistant answer tokens plus the end-of-turn token carry a label (LLaVA's `preprocess_v1` rule).
"""
from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class Template:
    name: str
    system: str
    user: str = "USER"
    assistant: str = "ASSISTANT"
    sep: str = " "
    sep2: str = "</s>"

    def _head(self) -> str:
        return self.system + self.sep if self.system else ""

    def prompt(self, question: str) -> str:
        """Single-turn generation prompt, ending right after `ASSISTANT:`."""
        return f"{self._head()}{self.user}: {question}{self.sep}{self.assistant}:"

    def segments(self, conversations: list[dict]) -> list[tuple[str, bool]]:
        """Split a conversation into (text, supervised) segments; concatenated they are the full text."""
        out: list[tuple[str, bool]] = []
        prefix = self._head()
        for turn in conversations:
            if turn["from"] == "human":
                prefix += f"{self.user}: {turn['value']}{self.sep}{self.assistant}:"
            elif turn["from"] == "gpt":
                out.append((prefix, False))
                out.append((f" {turn['value']}{self.sep2}", True))
                prefix = ""
            else:
                raise ValueError(f"unknown conversation role {turn['from']!r}")
        if prefix:
            out.append((prefix, False))
        return out


TEMPLATES = {
    "vicuna_v1": Template(
        "vicuna_v1",
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    ),
    "llava_v1": Template(
        "llava_v1",
        "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    ),
    # The tiny offline model: same separators and roles, no system sentence (it only lengthens sequences).
    "plain_v1": Template("plain_v1", ""),
}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise KeyError(f"unknown conversation template {name!r}; known: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name]


def expand_image_tokens(ids: list[int], image_token_id: int, num_image_tokens: int) -> list[int]:
    """Replace each image placeholder id by `num_image_tokens` copies (one per visual feature)."""
    out: list[int] = []
    for t in ids:
        out.extend([t] * num_image_tokens if t == image_token_id else [t])
    return out


def tokenize_prompt(tokenizer, text: str, image_token_id: int, num_image_tokens: int) -> list[int]:
    """Token ids of a generation prompt: BOS, then the text with the image placeholder expanded."""
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids += tokenizer(text, add_special_tokens=False)["input_ids"]
    return expand_image_tokens(ids, image_token_id, num_image_tokens)


def tokenize_conversation(
    tokenizer, template: Template, conversations: list[dict], image_token_id: int, num_image_tokens: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels for one conversation: labels are IGNORE_INDEX except on answer tokens.

    Segments are tokenised one by one (no special tokens added) after a BOS, so the mask is exact by
    construction and never suffers LLaVA's "tokenization mismatch" on multi-turn samples.
    """
    ids: list[int] = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels: list[int] = [IGNORE_INDEX] * len(ids)
    for text, supervised in template.segments(conversations):
        piece = expand_image_tokens(
            tokenizer(text, add_special_tokens=False)["input_ids"], image_token_id, num_image_tokens
        )
        ids += piece
        labels += piece if supervised else [IGNORE_INDEX] * len(piece)
    return ids, labels
