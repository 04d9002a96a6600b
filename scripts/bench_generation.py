"""Batched vs one-by-one generation on the tiny model: answers/second, and whether the answers agree.

Answers the same synthetic POPE questions twice in one process, through
`ModelHandle.generate`: in left-padded batches (default 32) and one question at a time (batch 1),
greedy with POPE's official max_new_tokens (128). Prints answers/second for each, the ratio, and
how many answers differ (left padding must not change a greedy answer).

The model is `matrix/assets/tiny-base/` when present, else a randomly initialised tiny LLaVA built
here (a random model rarely stops early, so every answer runs to max_new_tokens: a worst case).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_generation.py [--n 256] [--batch-size 32] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


TEMPLATE = "plain_v1"  # the tiny family's conversation template


def tiny_model(work: Path, questions: list[str]) -> Path:
    shipped = ROOT / "matrix" / "assets" / "tiny-base"
    if (shipped / "config.json").exists():
        print(f"model: {shipped} (shipped tiny base)")
        return shipped
    import random

    from matrix.models import handle, tiny
    from matrix.models.conversation import get_template
    from matrix.world import language
    from matrix.world.scene import draw_scene

    # The tokenizer is trained on the world's own text: the questions as prompted, captions, answers.
    rng = random.Random(0)
    template = get_template(TEMPLATE)
    corpus = [template.prompt(q) for q in questions] + [language.caption(draw_scene(rng)) for _ in range(200)]
    corpus = (corpus + ["Yes", "No", "Yes.", "No."]) * 4
    out = work / "tiny-random"
    tiny.build(out, corpus, tiny.TinyArch(), seed=0)
    handle.write_meta(out, "tiny", TEMPLATE)
    print(f"model: random tiny LLaVA built in {out} ({ROOT / 'matrix/assets/tiny-base'} is absent)")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=256, help="questions (default 256)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: POPE's official 128")
    # On a few shared cores, more OpenMP threads than free cores make every op wait on the slowest
    # thread (batched runs slowed 30x here with 2 threads on 2 busy cores); one thread measures fairly.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's own)")
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    from benchmarks.pope import Pope
    from matrix.models.handle import load

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench = Pope()
        bench.synthesize(work / "eval", max(1, args.n // 8), seed=0)
        samples = bench.load(work / "eval")
        while len(samples) < args.n:  # small scenes ask fewer questions: add images until there are enough
            bench.synthesize(work / "eval", len({s.image for s in samples}) * 2, seed=0)
            samples = bench.load(work / "eval")
        samples = samples[: args.n]
        images = [Image.open(s.image).convert("RGB") for s in samples]
        questions = [s.question for s in samples]
        max_new = args.max_new_tokens or bench.max_new_tokens
        model = load(tiny_model(work, questions))
        print(f"{len(samples)} POPE questions, max_new_tokens {max_new}, torch threads {torch.get_num_threads()}")

        model.generate(images[:2], questions[:2], max_new_tokens=4, batch_size=2)  # warm-up
        start = time.perf_counter()
        batched = model.generate(images, questions, max_new_tokens=max_new, batch_size=args.batch_size)
        t_batched = time.perf_counter() - start
        start = time.perf_counter()
        single = model.generate(images, questions, max_new_tokens=max_new, batch_size=1)
        t_single = time.perf_counter() - start

    rate_b, rate_s = len(samples) / t_batched, len(samples) / t_single
    differ = [i for i, (a, b) in enumerate(zip(batched, single)) if a != b]
    print(f"batched (batch {args.batch_size}): {t_batched:8.2f} s  {rate_b:8.2f} answers/s")
    print(f"one by one (batch 1):  {t_single:8.2f} s  {rate_s:8.2f} answers/s")
    print(f"speed-up: {rate_b / rate_s:.2f}x")
    # A random model rarely emits </s>, so its answers run to max_new_tokens (byte-level noise).
    print(f"e.g. answer #0: {batched[0][:60]!r}")
    print(f"answers that differ: {len(differ)} of {len(samples)}")
    for i in differ[:3]:
        print(f"  #{i}: batched {batched[i][:60]!r} vs single {single[i][:60]!r}")


if __name__ == "__main__":
    main()
