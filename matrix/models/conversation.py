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

    The conversation's text is tokenised whole, as the model reads it at generation time, and a token is
    supervised when it starts inside an answer segment (" {answer}</s>"; offsets from the tokenizer).
    Tokenising each segment on its own would not give the same tokens: LLaMA's SentencePiece tokenizer
    prepends its dummy-prefix `▁` to every piece it is given, so " Yes</s>" alone is `▁ ▁Yes </s>` where
    the whole text has `▁Yes </s>`; every answer would then be trained to start with a stray `▁`.
    """
    segments = template.segments(conversations)
    text = "".join(t for t, _ in segments)
    spans, pos = [], 0
    for t, supervised in segments:
        if supervised:
            spans.append((pos, pos + len(t)))
        pos += len(t)
    if not getattr(tokenizer, "is_fast", True):
        raise TypeError(f"{type(tokenizer).__name__}: supervision needs token offsets (a fast tokenizer)")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels: list[int] = [IGNORE_INDEX] * len(ids)
    for token, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"]):
        supervised = any(a <= start < b for a, b in spans)
        n = num_image_tokens if token == image_token_id else 1
        ids += [token] * n
        labels += [token] * n if supervised else [IGNORE_INDEX] * n
    return ids, labels
