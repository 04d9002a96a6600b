"""One training run: a registered objective (SFT, DPO...) on a LLaVA model, LoRA on the language model,
plain PyTorch or DeepSpeed.

`train(...)` is the whole train stage: load the base model, tokenise (loss on answer tokens only), let
the objective (`matrix.methods.objectives`) prepare (DPO: the reference log-probs), train, save the
checkpoint (`matrix.methods.checkpoint`), and return the costs the paper's Fig. 2 compares. Every
objective runs through one loop (`Loop`) and one engine interface (`matrix.methods.engine`: the plain
loop or DeepSpeed, which differ only in who accumulates, clips and steps), so their semantics are the same:
  * a global batch is `batch_size` examples (DPO: pairs) fed in `micro_batch_size` chunks, each
    chunk's loss weighted by its share of the batch, so a short last batch is still a proper mean;
  * one optimizer step per global batch, `ceil(epochs * ceil(N / batch_size))` steps in all;
  * torch AdamW (no decay on biases and norms), clipping at `max_grad_norm`, warmup + schedule.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matrix import memory
from matrix.models.handle import load
from matrix.methods import checkpoint
from matrix.methods._data import BatchMaker, Encoded, encode_examples
from matrix.methods._dist import LAUNCHED, default_extensions_dir, engine_config, process_group, world
from matrix.methods._setup import gather_trainable, lr_lambda, param_groups, prepare_model, submodule
from matrix.methods.engine import Engine, build
from matrix.methods.objectives.base import OBJECTIVES, Objective
from matrix.registry import UnknownPlugin

log = logging.getLogger(__name__)


class _Clock:
    seconds = 0.0


@dataclass
class Loop:
    """The training loop every objective runs through: forward passes over the encoded examples, global
    batches split into micro-batches (and over launched ranks), one engine step per global batch."""

    objective: Objective
    hp: dict
    encoded: list[tuple[Encoded, ...]]
    engine: Engine
    make_batch: BatchMaker
    tokens: int = 0
    log: list[dict] = field(default_factory=list)

    @property
    def model(self):
        return self.engine.model

    def logits(self, seqs: list[Encoded], train: bool = False):
        """Logits and the padded batch of `seqs` (one forward through the engine); `train`: a training
        forward, whose tokens count into the throughput."""
        batch = self.make_batch(seqs)
        with self.engine.autocast():
            out = self.engine.module(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"],
                use_cache=False,
                **({"image_sizes": batch["image_sizes"]} if "image_sizes" in batch else {}),
            )
        if train:
            self.tokens += int(batch["attention_mask"].sum())
        return out.logits, batch

    def micro_batches(self):
        """Every example once, in order, in micro-batches (the objectives' reference passes)."""
        mbs = self.hp["micro_batch_size"]
        for s in range(0, len(self.encoded), mbs):
            yield list(range(s, min(s + mbs, len(self.encoded))))

    @contextlib.contextmanager
    def evaluating(self):
        """The module in eval mode (dropout off) for a reference pass, back in train mode after."""
        self.engine.module.eval()
        try:
            yield
        finally:
            self.engine.module.train()

    @contextlib.contextmanager
    def timed(self):
        clock = _Clock()
        t = time.perf_counter()
        try:
            yield clock
        finally:
            clock.seconds = time.perf_counter() - t

    def step(self, idxs: list[int], epoch: int) -> None:
        """One optimizer step over the global batch `idxs`."""
        import torch

        mbs = self.hp["micro_batch_size"]
        rank, size = world()
        # Launched ranks split the global batch; a short last batch drops its remainder so that every
        # rank makes the same number of micro-steps (their collectives must pair up).
        idxs = idxs[: len(idxs) // size * size]
        if not idxs:
            return
        share = len(idxs) // size
        mine = idxs[rank * share : (rank + 1) * share]  # contiguous: rank r's micro-batches are the ones a
        # single process would make from that part of the batch
        micro = [mine[i : i + mbs] for i in range(0, len(mine), mbs)]
        lrs = self.engine.lrs()
        total = 0.0
        for k, mi in enumerate(micro):
            loss = self.objective.loss(self, mi)
            # DeepSpeed averages gradients over ranks: weighting by size/len(idxs) makes that average the
            # mean over the whole global batch.
            weighted = loss * (len(mi) * size / len(idxs))
            total += float(weighted.detach())
            self.engine.backward(weighted, last=k == len(micro) - 1)
        norm = self.engine.step()
        if size > 1:
            import torch.distributed as dist

            t = torch.tensor([total], dtype=torch.float64, device=self.make_batch.device)
            dist.all_reduce(t)
            total = float(t.item()) / size
        entry = {"step": len(self.log) + 1, "epoch": epoch, "lr": lrs[0], "loss": total, "examples": len(idxs)}
        if self.hp.get("projector_lr") is not None:
            entry["projector_lr"] = lrs[-1]  # its groups come last (`param_groups`)
        entry["grad_norm"] = norm
        entry.update(self.objective.end_step(len(mine)))
        self.log.append(entry)

    def run(self, total_steps: int) -> None:
        order = list(range(len(self.encoded)))
        epoch = 0
        while len(self.log) < total_steps:
            random.Random(self.hp["seed"] + epoch).shuffle(order)  # a fresh, reproducible order per epoch
            for b in range(0, len(order), self.hp["batch_size"]):
                if len(self.log) >= total_steps:  # fractional epochs stop mid-epoch
                    break
                self.step(order[b : b + self.hp["batch_size"]], epoch)
            epoch += 1


def train(
    base_model_dir: Path,
    examples: list[dict],
    image_root: Path,
    objective: str,
    hp: dict,
    out_dir: Path,
    template: str | None = None,
    **placement,
) -> dict:
    """Train and save to `out_dir`; returns timings, memory, loss (and DPO reward margins).

    `template` names the conversation template when the model directory does not (llava-hf models).
    `placement` (`device`, `dtype`, `gradient_checkpointing`, `family`): see `train_model`.
    """
    result, _ = train_model(base_model_dir, examples, image_root, objective, hp, out_dir, template, **placement)
    return result


def train_model(
    base_model_dir: Path,
    examples: list[dict],
    image_root: Path,
    objective: str,
    hp: dict,
    out_dir: Path,
    template: str | None = None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    gradient_checkpointing: bool = False,
    family: str | None = None,
) -> tuple[dict, Any]:
    """`train`, also returning the trained model (PEFT-wrapped under LoRA) for in-process checks.

    The base model is loaded onto `device` in `dtype` (the base model's, from the spec); its frozen
    weights stay in that dtype, the trained tensors are fp32, and the forward runs in bf16 (autocast, or
    DeepSpeed's bf16) when `hp["bf16"]` is set or the weights are not fp32. Under ZeRO-3 the returned
    model's parameters are left partitioned: reload the checkpoint instead.
    """
    with warnings.catch_warnings():
        # torch.distributed deprecation notices fire on every ZeRO collective; peft's on every wrap.
        warnings.filterwarnings(
            "ignore", category=FutureWarning, message=r".*(torch\.distributed|is_gradient_checkpointing)"
        )
        return _train(Path(base_model_dir), examples, Path(image_root), objective, hp, Path(out_dir), template,
                      device, dtype, gradient_checkpointing, family)


def _train(
    base_model_dir: Path,
    examples: list[dict],
    image_root: Path,
    objective: str,
    hp: dict,
    out_dir: Path,
    template: str | None,
    device_name: str,
    weights_dtype: str,
    gradient_checkpointing: bool,
    family: str | None,
) -> tuple[dict, Any]:
    import numpy as np
    import torch

    from matrix.runner.placement import describe

    start = time.perf_counter()
    try:
        obj: Objective = OBJECTIVES.get(objective).from_hp(hp)
    except UnknownPlugin as e:
        raise ValueError(f"objective {objective!r} trains nothing; known objectives: {', '.join(e.known)}") from None
    if hp["batch_size"] % hp["micro_batch_size"]:
        raise ValueError("batch_size must be a multiple of micro_batch_size")
    use_ds = hp.get("deepspeed") is not None
    on_cuda = device_name.startswith("cuda")
    if on_cuda and os.environ.get(LAUNCHED):  # one rank of `matrix.methods.launch`: its own GPU of the task's
        device_name = f"cuda:{os.environ['LOCAL_RANK']}"
    random.seed(hp["seed"])
    np.random.seed(hp["seed"] % 2**32)
    torch.manual_seed(hp["seed"])  # also fixes the LoRA A initialisation
    if use_ds:
        default_extensions_dir()

    handle = load(base_model_dir, template=template, dtype=weights_dtype, device=device_name, family=family)
    encoded, dropped = encode_examples(handle, examples, obj, hp["max_length"], image_root)
    if not encoded:
        raise ValueError(f"no trainable examples ({len(examples)} given, {dropped} dropped by max_length)")
    model = prepare_model(handle.model, hp, obj, handle.family, gradient_checkpointing)
    projector = submodule(model, handle.family.projector) if hp.get("projector_lr") is not None else None
    optimizer = torch.optim.AdamW(param_groups(model, hp["weight_decay"], hp["lr"], hp.get("projector_lr"), projector),
                                  lr=hp["lr"])
    total_steps = max(1, math.ceil(hp["epochs"] * math.ceil(len(encoded) / hp["batch_size"])))
    factor = lr_lambda(hp["scheduler"], math.ceil(hp["warmup_ratio"] * total_steps), total_steps)
    bf16 = bool(hp["bf16"]) or weights_dtype != "float32"  # half-precision weights: compute in bf16
    if bf16 and not on_cuda and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        # Measured on a 2-core AVX2 EPYC: bf16 trains the tiny model 8.5x slower than fp32 there.
        log.warning("bf16 on a CPU without native bf16 (capability %s): emulated and several times slower "
                    "than fp32; set training.bf16: false for CPU runs", torch.backends.cpu.get_cpu_capability())

    with process_group(on_cuda) if use_ds else contextlib.nullcontext():
        engine = build(model, optimizer, factor, hp,
                       deepspeed_config=engine_config({**hp, "bf16": bf16}, world()[1]) if use_ds else None,
                       bf16=bf16, device=device_name, weights_dtype=getattr(torch, weights_dtype))
        # As applied: HF sets `gradient_checkpointing` on the modules it recomputes.
        checkpointing = any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
        runtime = describe(model, hp["micro_batch_size"], compute_dtype="bfloat16" if bf16 else "float32",
                           gradient_checkpointing=checkpointing)
        loop = Loop(obj, hp, encoded, engine, BatchMaker(handle, image_root, hp["max_length"], engine.device, engine.dtype))
        obj.prepare(loop)
        engine.module.train()
        t = time.perf_counter()
        loop.run(total_steps)
        train_s = time.perf_counter() - t
        rank, size = world()
        named = gather_trainable(model, use_ds)
        checkpoint.save(out_dir, model, named)
        engine.close()

    steps = loop.log
    result = {
        "wall_s": time.perf_counter() - start,
        "train_s": train_s,
        "peak_mem_mb": memory.peak_mb(on_cuda),
        "tokens_per_s": loop.tokens / train_s if train_s > 0 else 0.0,
        "tokens": loop.tokens,
        "steps": len(steps),
        "final_loss": steps[-1]["loss"],
        "examples": len(encoded),
        "dropped_truncated": dropped,
        "trainable_params": sum(t.numel() for t in named.values()),
        "deepspeed_stage": hp["deepspeed"]["stage"] if use_ds else None,
        "rank": rank,
        "world_size": size,
        "runtime": runtime,
        **obj.result(steps),
    }
    record = {
        "objective": objective,
        "base_model_dir": str(base_model_dir),
        "template": handle.template.name,
        "hp": hp,
        "steps": steps,
        "result": result,
    }
    (out_dir / checkpoint.TRAIN_LOG).write_text(json.dumps(record, indent=1, default=str))
    return result, model
