"""Reading judge replies: the verdict, rating or score a benchmark's (or SIMA's) rules take from a
judge's text. Each returns None when the reply holds no readable answer; the caller decides what
that means (dropped, 0, asked again), as the benchmark's own script does."""
from __future__ import annotations

import math
import re


def parse_verdict(text: str | None, choices: tuple[int, ...] = (1, 2)) -> int | None:
    """The verdict in the last `[[...]]` (SIMA's `split('[[')[-1].split(']]')[0]`), if it is one of
    `choices`; None when there is no closed `[[...]]` or the last one holds something else."""
    if not text or "[[" not in text:
        return None
    tail = text.rsplit("[[", 1)[1]
    if "]]" not in tail:
        return None
    value = tail.split("]]", 1)[0].strip()
    if not re.fullmatch(r"[0-9]+", value):
        return None
    verdict = int(value)
    return verdict if verdict in choices else None


_RATING = re.compile(r"rating:\s*([0-9]+)(?!\.?[0-9])")


def parse_rating(text: str | None, low: int = 0, high: int = 6) -> int | None:
    """MMHal's rule: the reply, lowercased, names exactly one `rating: N` (repeats of the same N count
    once), with low <= N <= high. None otherwise, where MMHal's script would record 0 and warn.

    Unlike MMHal's substring test, N is read as a whole number ("rating: 10" is not a 1) and
    "rating:4" counts; a fractional "rating: 4.5" is not a rating.
    """
    if not text:
        return None
    found = {int(n) for n in _RATING.findall(text.lower())}
    if len(found) != 1:
        return None
    rating = found.pop()
    return rating if low <= rating <= high else None


def parse_score(text: str | None) -> float | None:
    """MM-Vet's rule: the reply's first word is a number in [0, 1]; None otherwise (MM-Vet then asks
    again, with a digit-only suffix and temperature raised by 0.5, up to 5 times)."""
    words = (text or "").split()
    if not words:
        return None
    try:
        score = float(words[0])
    except ValueError:
        return None
    return score if math.isfinite(score) and 0.0 <= score <= 1.0 else None
