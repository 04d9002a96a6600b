"""Bootstrap the tiny base model: tokenizer, random init, then full-parameter SFT on the shapes world.

`bootstrap(out_dir, recipe)` writes a loadable model directory (model, processor, `matrix_model.json`,
`recipe.json`, `stats.json`). The repository ships the result of `DEFAULT_RECIPE` in
`matrix/assets/tiny-base/`; rebuild it with

    HF_HUB_OFFLINE=1 python -m matrix.models.bootstrap matrix/assets/tiny-base

Without vision pretraining the model sat on a plateau (loss about 0.7, image ignored) for its first
1,500-2,500 steps (`STACK_NOTES.md` section 7); with it the loss falls within a few hundred steps, but the
step at which existence questions are learned varies with the seed, so short runs say little about long
ones (`docs/DESIGN.md`, the tiny model).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable, Iterator

from matrix.models import handle as handle_mod
from matrix.models import tiny
from matrix.models.bootstrap_mix import TASKS, conversation, tokenizer_corpus
from matrix.models.conversation import IGNORE_INDEX, get_template
from matrix.models.probe import probe
from matrix.models.vision_pretrain import pretrain_vision
from matrix.world.scene import draw_scene, render

log = logging.getLogger(__name__)

TEMPLATE = "plain_v1"

# The recipe's sixth later phase, mostly letters (DEFAULT_RECIPE's comments; the seventh is a variant of it).
_LETTERS: dict = {
    "steps": 3000, "lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.1, "max_length": 448, "min_turns": 1,
    "max_turns": 1, "caption_only": 0.0, "short_answer_suffix": 0.5, "yes_no_suffix": 0.2,
    "mix": {
        "lookup": 6.933333333333333, "choice": 3.4666666666666663, "ocr": 1.7333333333333332,
        "existence": 1.0, "colour": 1.0, "count": 0.5, "caption": 0.5, "shape": 0.3, "check": 0.5,
        "position": 0.3, "colour_of": 0.3, "shape_of": 0.3, "critic": 0.5,
    },
}

DEFAULT_RECIPE: dict = {
    # architecture (the fields of `tiny.TinyArch`): 48 px images, one 16 px patch per grid cell
    "image_size": 48,
    "patch_size": 16,
    "vision_hidden": 64,
    "vision_layers": 1,
    "vision_heads": 4,
    "text_hidden": 128,
    # 4 layers, not 2: after the main phase a 2-layer model no longer learns the letter of a named option
    # with an image in the prompt, a 4-layer one does (DESIGN.md, the tiny model)
    "text_layers": 4,
    "text_heads": 4,
    "text_kv_heads": 2,
    "text_mlp_ratio": 2,
    "vocab_size": 640,
    "max_positions": 512,
    "image_mean": list(tiny.WORLD_PIXEL_MEAN),
    "image_std": list(tiny.WORLD_PIXEL_STD),
    "init_std": 0.088,
    "tie_embeddings": True,
    "vision_position_init": 0.02,
    # before the language model trains: the vision tower alone learns to tell each cell's shape and colour
    # (a classification head on its patch features, dropped afterwards), as LLaVA starts from a pretrained
    # CLIP; 0 skips it
    "vision_pretrain_steps": 300,
    # optimisation: AdamW, linear warmup then a step-based cosine to `min_lr_ratio * lr`
    # seed 1: with seed 0 the 2-layer model's main phase at lr 3e-3 did not learn existence in 2,500 steps
    # (the escape from the constant answer comes at a step that varies with the seed; DESIGN.md, the tiny
    # model); the 4-layer model at 1e-3 leaves the plateau by step 700 (loss 0.39 at 400, 0.16 at 700;
    # other seeds not tried)
    "seed": 1,
    "steps": 2500,
    "batch_size": 16,
    # 1e-3, not 3e-3: at 3e-3 the model learned the main phase less well and could not learn the letters
    # afterwards (DESIGN.md, the tiny model)
    "lr": 1e-3,
    "vision_lr_scale": 1.0,
    "warmup_steps": 100,
    "min_lr_ratio": 0.0,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "max_length": 256,
    "length_grouping": 1,
    # data: conversations about `train_scenes` pre-rendered scenes, tasks drawn by `mix` weight. The main
    # phase is long conversations of existence questions and lookups by content ("What color is the
    # circle?", "none" when there is none), asked bare: the model learns to find an object by what it is
    # and to say whether it is there (DESIGN.md, the tiny model).
    "train_scenes": 10000,
    "min_turns": 6,
    "max_turns": 8,
    "caption_only": 0.0,
    "short_answer_suffix": 0.0,
    "yes_no_suffix": 0.0,
    "mix": {"existence": 2.0, "colour_of": 1.0, "shape_of": 1.0},
    # then further phases on the same model, each a dict of the keys in PHASE_KEYS: a fresh optimiser and
    # schedule, its own mix. The first teaches the letter of an option the question names ("Which option says
    # red?", 70% of the turns; the main phase's tasks the rest): it emerges after some 1,500 steps of it (a
    # 2-layer model, or a main phase at lr 3e-3, did not learn it with the image at all). The second carries
    # the main phase's yes/no over to questions with the benchmarks' answer suffixes (the main phase asks them
    # bare; without this bridge the broad phase starts from existence at chance and relearns it late, or at lr
    # 1e-3 not at all: issue 18's runs). The third teaches the rest of the world (captions, colours, counts,
    # positions, attribute checks, multiple choice, which the lookup makes learnable); the fourth SIMA's self-
    # critic (its long prompts need the longer max_length), while the other tasks keep being rehearsed. Weight
    # decay 0.1 in every later phase keeps the model able to learn to copy, which the fifth phase then
    # teaches: TextVQA's OCR token at half of single-question conversations for 2,500 steps (mixed into longer
    # conversations at a tenth to a fifth of the turns, it is never learned: it emerges only after some 1,000
    # steps' worth of it; the letters fall below chance meanwhile, 0.05-0.07). The sixth asks mostly for
    # letters (a named option's 40%, multiple choice 20%, OCR 10% of the turns; the other 30% the rest, 5.2 in
    # weight), which brings them back; the seventh, at half the lr, the same with multiple choice at 40% and
    # the named option at 10% (docs/DESIGN.md, the tiny model).
    "phases": [
        {
            "steps": 3000, "lr": 1e-3, "warmup_steps": 50, "weight_decay": 0.1, "min_turns": 1, "max_turns": 2,
            "caption_only": 0.0, "short_answer_suffix": 0.0, "yes_no_suffix": 0.0,
            "mix": {"lookup": 7.0, "existence": 1.5, "colour_of": 0.75, "shape_of": 0.75},
        },
        {
            "steps": 800, "lr": 1e-3, "warmup_steps": 50, "weight_decay": 0.1, "min_turns": 6, "max_turns": 8,
            "caption_only": 0.0, "short_answer_suffix": 0.5, "yes_no_suffix": 0.2,
            "mix": {"existence": 2.0, "colour_of": 1.0, "shape_of": 1.0, "colour": 1.5, "ocr": 1.0, "lookup": 1.0},
        },
        {
            "steps": 2000, "lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.1, "min_turns": 2, "max_turns": 5,
            "caption_only": 0.15, "short_answer_suffix": 0.5, "yes_no_suffix": 0.2,
            "mix": {
                "existence": 4.0, "colour": 2.5, "shape": 1.0, "count": 1.5, "position": 1.0, "check": 1.5,
                "caption": 2.0, "colour_of": 1.0, "shape_of": 1.0, "ocr": 1.0, "lookup": 1.0, "choice": 2.0,
            },
        },
        {
            "steps": 1000, "lr": 7e-4, "warmup_steps": 50, "weight_decay": 0.1, "max_length": 448, "min_turns": 2,
            "max_turns": 5, "caption_only": 0.15, "short_answer_suffix": 0.5, "yes_no_suffix": 0.2,
            "mix": {
                "existence": 4.0, "colour": 2.5, "shape": 1.0, "count": 1.5, "position": 1.0, "check": 1.5,
                "caption": 2.0, "colour_of": 1.0, "shape_of": 1.0, "choice": 2.0, "ocr": 1.0, "critic": 3.0,
                "lookup": 1.0,
            },
        },
        {
            "steps": 2500, "lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.1, "min_turns": 1, "max_turns": 1,
            "caption_only": 0.0, "short_answer_suffix": 0.5, "yes_no_suffix": 0.2,
            "mix": {
                "ocr": 4.7, "existence": 1.0, "colour": 1.0, "count": 0.5, "caption": 0.5, "shape": 0.3, "check": 0.5,
                "position": 0.3, "colour_of": 0.3, "shape_of": 0.3,
            },
        },
        _LETTERS,
        # the letters phase again at half the lr, multiple choice and the named option's shares swapped
        {**_LETTERS, "steps": 2000, "lr": 5e-4,
         "mix": {**_LETTERS["mix"], "lookup": 1.7333333333333332, "choice": 6.933333333333333}},
    ],
    # held-out probe after training (fresh scenes, seed derived from `seed`)
    "eval_scenes": 300,
}
# `grow_layers`: decoder layers appended to the language model before the phase, each starting as the
# identity (`tiny.grow_text_layers`); `train_only_grown`: the phase trains those layers (and the final
# norm) alone, so what the model already knew cannot be forgotten.
PHASE_KEYS = ("steps", "lr", "warmup_steps", "min_lr_ratio", "weight_decay", "max_length", "batch_size", "mix", "min_turns",
              "max_turns", "caption_only", "short_answer_suffix", "yes_no_suffix", "grow_layers", "train_only_grown")

PROBE_SEED_OFFSET = 1_000_003


def resolve(recipe: dict) -> dict:
    """`DEFAULT_RECIPE` overridden by `recipe`; unknown keys or mix tasks are an error."""
    unknown = sorted(set(recipe) - set(DEFAULT_RECIPE))
    if unknown:
        raise ValueError(f"unknown bootstrap recipe keys {unknown}; known: {sorted(DEFAULT_RECIPE)}")
    full = {**DEFAULT_RECIPE, **recipe}
    for n, phase in enumerate(full["phases"]):
        extra = sorted(set(phase) - set(PHASE_KEYS))
        if extra:
            raise ValueError(f"unknown keys {extra} in bootstrap phase {n}; known: {list(PHASE_KEYS)}")
    for mix in [full["mix"], *(p["mix"] for p in full["phases"] if "mix" in p)]:
        bad = sorted(set(mix) - set(TASKS))
        if bad:
            raise ValueError(f"unknown bootstrap tasks {bad} in mix; known: {sorted(TASKS)}")
    return full


def done_phases(built: dict, recipe: dict) -> int:
    """How many of `recipe`'s later phases a model built by `built` has had: `built` must be `recipe`
    cut after its main phase and its first k later phases (what `resume_from` accepts)."""
    full = resolve(recipe)
    k = len(built.get("phases", []))
    prefix = {**full, "phases": full["phases"][:k], "eval_scenes": None}  # the probe's size trains nothing
    if k > len(full["phases"]) or {**resolve(built), "eval_scenes": None} != prefix:
        raise ValueError("was not built by a beginning of this recipe (its main phase and first later phases)")
    return k


def arch_of(recipe: dict) -> tiny.TinyArch:
    values = {f.name: recipe[f.name] for f in fields(tiny.TinyArch)}
    return tiny.TinyArch(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def lr_factor(step: int, recipe: dict) -> float:
    """Multiplier of the base lr at `step`: linear warmup, then cosine over the remaining steps."""
    warmup, total = recipe["warmup_steps"], recipe["steps"]
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = recipe["min_lr_ratio"]
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def batches(handle, scenes: list, rng: random.Random, recipe: dict) -> Iterator[tuple[list[int], list]]:
    """Endless (scene indices, encoded conversations) batches.

    With `length_grouping = k > 1`, k batches are drawn together and split by sequence length, so
    a batch pads less (about 30% fewer tokens at k = 4); their order is shuffled.
    """
    size, k = recipe["batch_size"], recipe["length_grouping"]
    while True:
        idx = [rng.randrange(len(scenes)) for _ in range(size * k)]
        encoded = [handle.encode_conversation(conversation(scenes[i], rng, recipe)) for i in idx]
        order = sorted(range(len(idx)), key=lambda j: len(encoded[j][0])) if k > 1 else list(range(len(idx)))
        groups = [order[g * size : (g + 1) * size] for g in range(k)]
        rng.shuffle(groups)
        for group in groups:
            yield [idx[j] for j in group], [encoded[j] for j in group]


def answer_loss(model, batch: dict, pixel_values) -> "torch.Tensor":  # noqa: F821
    """Mean next-token cross-entropy over labelled tokens, as the model's own loss, but computing
    the vocabulary projection only where a label is (answers are a small part of each sequence)."""
    import torch.nn.functional as F

    hidden = model.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=pixel_values
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    return F.cross_entropy(model.lm_head(hidden[:, :-1][keep]).float(), targets[keep])


def available_cpus() -> int:
    """CPUs this process may use; an explicit `OMP_NUM_THREADS` (a scheduler pinning stages) caps it."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(n, int(cap)) if cap.isdigit() and int(cap) > 0 else n


def _load_weights(model, path: Path) -> None:
    from transformers import LlavaForConditionalGeneration

    # strict: every tensor of this recipe's architecture, and nothing else
    model.load_state_dict(LlavaForConditionalGeneration.from_pretrained(path).state_dict(), strict=True)


def _train_phase(model, handle, pixels, stream, recipe: dict, losses: list[float],
                 progress: Callable[[int, float], None] | None, eval_every: int, seed: int) -> None:
    """`recipe["steps"]` optimiser steps with a fresh AdamW and warmup + cosine schedule."""
    import torch

    vision = [p for n, p in model.named_parameters() if "vision_tower" in n or "multi_modal_projector" in n]
    vision_ids = {id(p) for p in vision}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in vision_ids], "lr": recipe["lr"]},
        {"params": vision, "lr": recipe["lr"] * recipe["vision_lr_scale"]},
    ]
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, recipe))
    model.train()
    for step in range(recipe["steps"]):
        idx, examples = next(stream)
        batch = handle_mod.collate(handle, examples, recipe["max_length"])
        loss = answer_loss(model, batch, pixels[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["max_grad_norm"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if progress is not None:
            progress(len(losses), losses[-1])
        if eval_every and len(losses) % eval_every == 0:
            log.info("step %d probe %s", len(losses), probe(handle, 100, seed + PROBE_SEED_OFFSET))
            model.train()


def _grow(model, phase: dict, seed: int) -> None:
    """Before a phase: its `grow_layers`, and with `train_only_grown` only they (and the final norm) train."""
    first = len(model.model.language_model.layers)
    if phase.get("grow_layers"):
        tiny.grow_text_layers(model, phase["grow_layers"], seed + first)
    grown = tuple(f"language_model.layers.{i}." for i in range(first, len(model.model.language_model.layers)))
    for name, weight in model.named_parameters():
        weight.requires_grad = not phase.get("train_only_grown") or any(g in name for g in grown) \
            or name.endswith("language_model.norm.weight")


def fresh_model(recipe: dict):
    """The recipe's untrained model: (model, processor, handle), tokenizer trained on the world's phrasings."""
    import torch

    arch, seed = arch_of(recipe), recipe["seed"]
    tokenizer = tiny.build_tokenizer(tokenizer_corpus(TEMPLATE, seed), arch.vocab_size)
    processor = tiny.build_processor(tokenizer, arch)
    model = tiny.build_model(tokenizer, arch, seed)
    with torch.no_grad():
        model.model.vision_tower.embeddings.position_embedding.weight.normal_(
            0.0, recipe["vision_position_init"]
        )
    handle = handle_mod.ModelHandle(
        model=model,
        tokenizer=tokenizer,
        image_processor=processor.image_processor,
        template=get_template(TEMPLATE),
        image_token_id=model.config.image_token_id,
        num_image_tokens=arch.num_image_tokens,
    )
    return model, processor, handle


def bootstrap(
    out_dir: Path,
    recipe: dict,
    progress: Callable[[int, float], None] | None = None,
    *,
    eval_every: int = 0,
    resume_from: Path | None = None,
) -> dict:
    """Build and train the tiny model with `recipe`, save it to `out_dir`, return training stats.

    `progress(step, loss)` is called after every optimiser step; `eval_every > 0` also logs a small
    held-out probe every that many steps (for tuning; it does not change training). `resume_from`:
    a model folder built by a beginning of `recipe` (its main phase and its first k later phases,
    `done_phases`); its weights stand in for those phases' training, the rest is trained on it.
    """
    import torch

    started = time.time()
    recipe = resolve(recipe)
    done = 0
    if resume_from is not None:
        built = json.loads((Path(resume_from) / "recipe.json").read_text())
        try:
            done = done_phases(built, recipe)
        except ValueError as e:
            raise ValueError(f"{resume_from} {e}") from None
    out_dir = Path(out_dir)
    torch.set_num_threads(available_cpus())
    seed = recipe["seed"]
    rng = random.Random(seed)
    arch = arch_of(recipe)

    model, processor, handle = fresh_model(recipe)

    scenes = [draw_scene(rng) for _ in range(recipe["train_scenes"])]
    pixels = torch.cat(
        [handle.pixel_values([render(s, arch.image_size) for s in scenes[i : i + 1000]]) for i in range(0, len(scenes), 1000)]
    )

    train_started = time.time()
    losses: list[float] = []
    stream = batches(handle, scenes, rng, recipe)
    if resume_from is not None:
        # The first phases' result is given: replay their data streams (cheap: no model calls), so the
        # later phases see exactly the batches they would have seen after training them, and load it
        # into the architecture those phases grew.
        for _ in range(recipe["steps"]):
            next(stream)
        for phase in recipe["phases"][:done]:
            _grow(model, phase, seed)
            stream = batches(handle, scenes, rng, {**recipe, **phase})
            for _ in range(phase.get("steps", recipe["steps"])):
                next(stream)
        _load_weights(model, Path(resume_from))
    else:
        vision_losses = pretrain_vision(model, handle, recipe) if recipe["vision_pretrain_steps"] else []
        _train_phase(model, handle, pixels, stream, recipe, losses, progress, eval_every, seed)
    for phase in recipe["phases"][done:]:
        phase_recipe = {**recipe, **phase}
        _grow(model, phase, seed)
        stream = batches(handle, scenes, rng, phase_recipe)
        _train_phase(model, handle, pixels, stream, phase_recipe, losses, progress, eval_every, seed)
    for weight in model.parameters():
        weight.requires_grad = True
    train_seconds = time.time() - train_started
    if resume_from is not None:
        vision_losses = []

    model.eval()
    heldout = probe(handle, recipe["eval_scenes"], seed + PROBE_SEED_OFFSET) if recipe["eval_scenes"] else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    handle_mod.write_meta(out_dir, "tiny", TEMPLATE, recipe=recipe)
    tail = losses[-50:]
    stats = {
        "steps": recipe["steps"] + sum(p.get("steps", recipe["steps"]) for p in recipe["phases"]),
        "resumed_from": str(resume_from) if resume_from is not None else None,
        "resumed_after_phases": done if resume_from is not None else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - started, 1),
        "final_loss": round(sum(tail) / len(tail), 4) if tail else None,
        "vision_pretrain_final_loss": round(vision_losses[-1], 4) if vision_losses else None,
        "heldout": heldout,
    }
    (out_dir / "recipe.json").write_text(json.dumps(recipe, indent=1) + "\n")
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m matrix.models.bootstrap", description="Build the tiny base model with the bootstrap recipe."
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, help="override the recipe's number of steps")
    parser.add_argument("--recipe", type=Path, help="JSON file of recipe overrides")
    parser.add_argument("--eval-every", type=int, default=0, help="log a held-out probe every N steps")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--resume-from", type=Path,
                        help="a model folder built by a beginning of this recipe (its main phase and first later phases)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    overrides = json.loads(args.recipe.read_text()) if args.recipe else {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    started = time.time()
    window: list[float] = []

    def report(step: int, loss: float) -> None:
        window.append(loss)
        if step % args.log_every == 0:
            log.info("step %d loss %.4f (%.0f s)", step, sum(window) / len(window), time.time() - started)
            window.clear()

    stats = bootstrap(args.out_dir, overrides, report, eval_every=args.eval_every, resume_from=args.resume_from)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
