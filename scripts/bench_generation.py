"""Generation throughput on the tiny model: one by one, in batches, and in batches by prompt length.

Answers the same synthetic benchmark questions (POPE by default; `--benchmark mmbench,mmvet` mixes
several, interleaved) three times in one process through `ModelHandle.generate`: in left-padded
batches in the questions' order (`by_length=False`), in batches of similar prompt length
(`by_length=True`, the default: matrix/models/batching.py), and one question at a time. Greedy with
the (first) benchmark's official max_new_tokens unless `--max-new-tokens`. Prints answers/second for
each, the speed-ups, the pad tokens per batch, and how many answers differ (neither left padding nor
the batches' make-up may change a greedy answer).

`--real-eval DIR` asks the questions of the real benchmark files instead (LLaVA's eval layout, e.g.
`../shared/real-eval`, which has no images): every k-th question of the file, in its order, as an answer
stage meets them, each with the same grey 336 px image (a LLaVA-1.5 prompt has 576 image tokens whatever
the picture, so the lengths are the real ones; the answers are not meaningful, only compared).

The model is `--model DIR` when given (e.g. the scaled-down real-architecture LLaVA-1.5 that
`scripts/build_llava_fixture.py OUT` writes: Llama tokenizer, CLIP-336 tower, 576 image tokens), else
`matrix/assets/tiny-base/` when present, else a randomly initialised tiny LLaVA built here (a random
model rarely stops early, so every answer runs to max_new_tokens: a worst case).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_generation.py [--n 256] [--batch-size 32] [--threads 1]
        [--device cuda --dtype bfloat16] [--model DIR] [--real-eval DIR]
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
    parser.add_argument("--benchmark", default="pope", help="benchmark plug-in(s), comma-separated (default pope)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the benchmark's official one")
    parser.add_argument("--repeat", type=int, default=3, help="batched runs: the best of this many (default 3)")
    parser.add_argument("--skip-single", action="store_true", help="skip the one-by-one run (the slowest)")
    # On a few shared cores, more OpenMP threads than free cores make every op wait on the slowest
    # thread (batched runs slowed 30x here with 2 threads on 2 busy cores); one thread measures fairly.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's own)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    parser.add_argument("--real-eval", type=Path, default=None,
                        help="the benchmarks' real question files, from this folder (LLaVA's eval layout)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a model directory to measure instead of the tiny model, e.g. the real-architecture "
                             "checkpoint `python scripts/build_llava_fixture.py OUT` writes")
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    from matrix.benchmarks.base import BENCHMARKS
    from matrix.models.handle import load

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    names = args.benchmark.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        each = -(-args.n // len(names))
        if args.real_eval is not None:
            per = [real_questions(BENCHMARKS.get(name)(), args.real_eval, each) for name in names]
        else:
            per = [questions_of(BENCHMARKS.get(name)(), work / name, each) for name in names]
        samples = [s for group in zip(*per) for s in group][: args.n]  # interleaved
        if args.real_eval is not None:
            grey = Image.new("RGB", (336, 336), (128, 128, 128))
            images = [grey] * len(samples)
        else:
            images = [Image.open(s.image).convert("RGB") for s in samples]
        questions = [s.question for s in samples]
        max_new = args.max_new_tokens or BENCHMARKS.get(names[0]).max_new_tokens
        if args.model is not None:
            print(f"model: {args.model}")
        model = load(args.model if args.model is not None else tiny_model(work, questions),
                     device=args.device, dtype=args.dtype)
        print(f"{len(samples)} {'+'.join(names)} questions, max_new_tokens {max_new}, "
              f"torch threads {torch.get_num_threads()}, {args.device} {args.dtype}")
        lengths = [len(model.encode_prompt(q, im.size)) for q, im in zip(questions, images)]
        by_length = padding(sorted(lengths, reverse=True), args.batch_size)
        print(f"prompt tokens: {min(lengths)}-{max(lengths)}; pad tokens per question in batches of {args.batch_size}: "
              f"{padding(lengths, args.batch_size):.1f} in order, {by_length:.1f} by length")

        # Warm-up: one untimed pass over all questions (a first pass is slower: allocator, caches), then
        # the two batched ways alternate, the best of `--repeat` each, so neither gains from going second.
        model.generate(images, questions, max_new_tokens=max_new, batch_size=args.batch_size, by_length=False)
        ways = {"batched": {"batch_size": args.batch_size, "by_length": False},
                "by length": {"batch_size": args.batch_size, "by_length": True}}
        runs: dict[str, tuple[list[str], float]] = {}
        for _ in range(args.repeat):
            for name, kwargs in ways.items():
                start = time.perf_counter()
                answers = model.generate(images, questions, max_new_tokens=max_new, **kwargs)
                took = time.perf_counter() - start
                runs[name] = (answers, min(took, runs.get(name, (None, float("inf")))[1]))
        if not args.skip_single:
            start = time.perf_counter()
            answers = model.generate(images, questions, max_new_tokens=max_new, batch_size=1)
            runs["one by one"] = (answers, time.perf_counter() - start)

    for name, (_, t) in runs.items():
        print(f"{name:>11} (batch {1 if name == 'one by one' else args.batch_size:>3}): {t:8.2f} s  "
              f"{len(samples) / t:8.2f} answers/s")
    base = runs["batched"][1]
    print(f"speed-up of batches by length over plain batches: {base / runs['by length'][1]:.2f}x")
    if "one by one" in runs:
        print(f"speed-up of plain batches over one by one: {runs['one by one'][1] / base:.2f}x")
    print(f"e.g. answer #0: {runs['batched'][0][0][:60]!r}")
    for name in [n for n in runs if n != "batched"]:
        differ = [i for i, (a, b) in enumerate(zip(runs["batched"][0], runs[name][0])) if a != b]
        print(f"answers that differ, {name} vs batched: {len(differ)} of {len(samples)}")
        for i in differ[:3]:
            print(f"  #{i}: batched {runs['batched'][0][i][:60]!r} vs {name} {runs[name][0][i][:60]!r}")


def questions_of(bench, root: Path, n: int) -> list:
    """At least `n` synthetic questions of `bench` (small scenes ask fewer: images are added until enough)."""
    from matrix.world.benchmarks import synthesize_benchmark

    synthesize_benchmark(bench.id, root, max(1, n // 8), seed=0)
    samples = bench.load(root)
    while len(samples) < n:
        synthesize_benchmark(bench.id, root, len({s.image for s in samples}) * 2, seed=0)
        samples = bench.load(root)
    return samples[:n]


def real_questions(bench, root: Path, n: int) -> list:
    """Every k-th question with an image of `bench`'s real files under `root`, in file order, `n` of
    them (ScienceQA's text-only questions have no image tokens: they are left out)."""
    samples = [s for s in bench.load(root, images=False) if s.meta.get("is_multimodal", True)]
    step = max(1, len(samples) // n)
    return samples[::step][:n]


def padding(lengths: list[int], batch_size: int) -> float:
    """Pad tokens per question when consecutive slices of `lengths` form the batches."""
    pads = 0
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start:start + batch_size]
        pads += sum(max(chunk) - n for n in chunk)
    return pads / max(1, len(lengths))


if __name__ == "__main__":
    main()
