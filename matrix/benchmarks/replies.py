"""Reading judge replies: the verdict, rating or score a benchmark's (or SIMA's) rules take from a
judge's text. Each returns None when the reply holds no readable answer; the caller decides what
that means (dropped, 0, asked again), as the benchmark's own script does."""
from __future__ import annotations

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


def parse_rating(text: str | None, low: int = 0, high: int = 6) -> int | None:
    """MMHal's rule (LLaVA-RLHF `Eval/eval_gpt_mmhal.py`): the N in low..high for which `rating: N` is a
    substring of the lowercased reply, when exactly one N is; None otherwise (MMHal then records 0).

    Official quirks, kept: it is a substring test, so "Rating: 10" reads 1, "Rating: 4.5" 4, "Rating: 30"
    3 and "rating: 06" 0; "rating:4" and "Rating:  4" (no or two spaces) name no rating.
    """
    if not text:
        return None
    lowered = text.lower()
    found = [n for n in range(low, high + 1) if f"rating: {n}" in lowered]
    return found[0] if len(found) == 1 else None


def parse_score(text: str | None) -> float | None:
    """MM-Vet's rule (`mm-vet_evaluator.py`): `float(reply.split(" ")[0].strip())`, kept when it is not
    outside [0, 1]; None otherwise (MM-Vet then asks again, up to 5 readable replies in all).

    Official quirks, kept: only a space ends the first token, so " 0.7" (a leading space), "0.5\nThe"
    and "0.5\t1" are unreadable; "nan" passes the range test and is accepted (the total becomes nan,
    as MM-Vet's would).
    """
    token = (text or "").split(" ")[0].strip()
    try:
        score = float(token)
    except ValueError:
        return None
    if score > 1.0 or score < 0.0:
        return None
    return score
