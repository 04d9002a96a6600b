"""Batching by prompt length: fewer pad tokens per batch, the same greedy answers (in float32).

A batch is as wide as its longest prompt, so questions of mixed lengths in one batch spend compute
on padding. `in_length_order` runs a batched function on its inputs ordered by prompt length
(longest first: a batch that does not fit in memory shows at once) and puts the outputs back in the
callers' order. The function forms its batches from contiguous slices, so each batch holds prompts
of similar length. Greedy and beam-search answers do not depend on what else is in the batch (left
padding is masked) in float32; in bf16 on a GPU a different pad width changes the order of the sums,
and a near-tied greedy choice can flip (18 of 512 answers of a random-weight model on an H200; as
any change of batch size can: docs/DESIGN.md). Sampled answers do depend on it (the random stream
is consumed batch by batch), so callers keep the plain order there.
"""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices longest first; equal lengths keep their order (a stable sort)."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def in_length_order(run: Callable[..., list[T]], lengths: Sequence[int], *columns: Sequence) -> list[T]:
    """`run(*columns)` with every column in `length_order(lengths)`; its i-th output back at position i."""
    order = length_order(lengths)
    outputs = run(*([col[i] for i in order] for col in columns))
    if len(outputs) != len(order):
        raise ValueError(f"expected {len(order)} outputs, got {len(outputs)}")
    restored: list = [None] * len(order)
    for pos, i in enumerate(order):
        restored[i] = outputs[pos]
    return restored
