"""One training run: SFT or DPO on a LLaVA model, LoRA on the language model, plain PyTorch or DeepSpeed.

`train(...)` is the whole train stage: load the base model, tokenise (loss on answer tokens only),
for DPO precompute the reference log-probs (or, `reference: adapters_off`, compute them at each step with
LoRA switched off), train, save the checkpoint (`matrix.methods.checkpoint`), and
return the costs the paper's Fig. 2 compares. Both paths share one loop; the DeepSpeed path only
swaps the backward/step calls for the engine's, so their semantics are the same:
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
import resource
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from matrix.models.handle import load
from matrix.methods import checkpoint
from matrix.methods._data import BatchMaker, Encoded, encode_examples
from matrix.methods._dist import LAUNCHED, default_extensions_dir, engine_config, process_group, world
from matrix.methods._setup import gather_trainable, lr_lambda, param_groups, prepare_model, submodule
from matrix.methods.objectives import dpo_loss, sequence_logps, sft_loss, top_other_logps, topk_kl, topk_reference

log = logging.getLogger(__name__)

# Per-token KL (-kl methods): the reference pass keeps the top-KL_TOPK tokens per supervised position
# (see objectives.topk_kl for why not the sampled-token estimator). 16 ids + log-probs per token is
# 128 bytes: 10k five-turn conversations of ~200 answer tokens take ~0.26 GB of CPU memory.
KL_TOPK = 16


@dataclass
class _Loop:
    objective: str
    hp: dict
    encoded: list[tuple[Encoded, ...]]
    module: Any  # what forward runs through: the DeepSpeed engine or the model itself
    engine: Any  # None on the plain path
    model: Any
    optimizer: Any
    scheduler: Any
    make_batch: BatchMaker
    autocast: Callable[[], Any]
    ref: Any = None  # (N, 2) reference log-probs of chosen / rejected, DPO with a precomputed reference
    ref_s: float = 0.0  # time spent on reference passes (adapters_off: inside the training loop)
    ref_topk: Any = None  # per example: (ids, log-probs) of the reference's top-k tokens, SFT + KL only
    tokens: int = 0
    kl_sum: float = 0.0  # KL summed over the current step's examples (weighted by micro-batch size)
    log: list[dict] = field(default_factory=list)

    def logits(self, seqs: list[Encoded]):
        batch = self.make_batch(seqs)
        with self.autocast():
            out = self.module(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"],
                use_cache=False,
                **({"image_sizes": batch["image_sizes"]} if "image_sizes" in batch else {}),
            )
        return out.logits, batch

    def pair_logps(self, logits, labels):
        """(2, m) summed log-probs of chosen / rejected from one batch of 2m (chosen first). The rejected
        half is scored by `rejected_logps`: its own tokens (standard DPO), or `top_other_token`, SIMA's
        trainer's rule (`objectives.top_other_logps`)."""
        import torch

        logps = sequence_logps(logits, labels).view(2, -1)
        if self.hp.get("rejected_logps", "rejected_tokens") == "top_other_token":
            m = logps.shape[1]
            logps = torch.stack([logps[0], top_other_logps(logits[m:], labels[m:])])
        return logps

    def _pairs(self, idxs: list[int]) -> list[Encoded]:
        """Chosen then rejected in one batch of 2m (SeVa's layout): one forward per micro-batch."""
        return [self.encoded[i][0] for i in idxs] + [self.encoded[i][1] for i in idxs]

    def reference(self) -> None:
        """Before the first step the policy IS the un-adapted model (LoRA B = 0, nothing trained yet),
        so one no-grad pass over it gives the reference log-probs, in training's own precision,
        without a second resident model."""
        import torch

        self.module.eval()
        self.ref = torch.zeros(len(self.encoded), 2)
        mbs = self.hp["micro_batch_size"]
        with torch.no_grad():
            for s in range(0, len(self.encoded), mbs):
                idxs = list(range(s, min(s + mbs, len(self.encoded))))
                logits, batch = self.logits(self._pairs(idxs))
                self.ref[idxs] = self.pair_logps(logits, batch["labels"]).t().float().cpu()
        self.module.train()

    def reference_logps(self, idxs: list[int]):
        """(2, m) reference log-probs of chosen / rejected of pairs `idxs`. `reference: adapters_off`: a no-grad
        pass of the policy with its LoRA adapters switched off, so the base LLM with the CURRENT projector, as
        SIMA's and CSR's trainers (`disable_adapter()`, tool/dpo_trainer.py) and SeVa's (the policy's
        `prepare_inputs_labels_for_multimodal` feeds its frozen reference) compute it; `precomputed`: the
        rows `reference()` stored before the first step (the initial projector)."""
        import torch

        if self.hp.get("reference", "precomputed") != "adapters_off":
            return self.ref[idxs].t()
        t = time.perf_counter()
        with torch.no_grad(), self.model.disable_adapter():
            logits, batch = self.logits(self._pairs(idxs))
            out = self.pair_logps(logits, batch["labels"]).float()
        self.ref_s += time.perf_counter() - t
        return out

    def reference_topk(self) -> None:
        """SFT + KL: the un-adapted model's top-k next-token log-probs at every supervised position,
        from one no-grad pass before the first step (as `reference` does for DPO)."""
        import torch

        self.module.eval()
        self.ref_topk = [None] * len(self.encoded)
        mbs = self.hp["micro_batch_size"]
        with torch.no_grad():
            for s in range(0, len(self.encoded), mbs):
                idxs = list(range(s, min(s + mbs, len(self.encoded))))
                logits, batch = self.logits([self.encoded[i][0] for i in idxs])
                for i, entry in zip(idxs, topk_reference(logits, batch["labels"], KL_TOPK)):
                    self.ref_topk[i] = entry
        self.module.train()

    def _micro(self, idxs: list[int]):
        import torch

        if self.objective == "sft":
            logits, batch = self.logits([self.encoded[i][0] for i in idxs])
            loss, rewards = sft_loss(logits, batch["labels"]), None
            if self.ref_topk is not None:
                kl = topk_kl(logits, batch["labels"], [self.ref_topk[i] for i in idxs])
                self.kl_sum += float(kl.detach()) * len(idxs)
                loss = loss + self.hp["kl_lambda"] * kl
        else:
            logits, batch = self.logits(self._pairs(idxs))
            chosen, rejected = self.pair_logps(logits, batch["labels"])
            ref_chosen, ref_rejected = self.reference_logps(idxs).to(chosen.device)
            loss, cr, rr = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.hp["beta"])
            rewards = torch.stack([cr, rr], 1).float().cpu()
        self.tokens += int(batch["attention_mask"].sum())
        return loss, rewards

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
        lrs = self.scheduler.get_last_lr()
        lr = lrs[0]
        total, rewards = 0.0, []
        for k, mi in enumerate(micro):
            loss, r = self._micro(mi)
            # DeepSpeed averages gradients over ranks: weighting by size/len(idxs) makes that average the
            # mean over the whole global batch.
            weighted = loss * (len(mi) * size / len(idxs))
            total += float(weighted.detach())
            if r is not None:
                rewards.append(r)
            if self.engine is not None:
                # We own the accumulation boundary, so a short last batch still makes exactly one step.
                self.engine.set_gradient_accumulation_boundary(k == len(micro) - 1)
                self.engine.backward(weighted, scale_wrt_gas=False)
                self.engine.step()
            else:
                weighted.backward()
        if self.engine is None:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hp["max_grad_norm"] or math.inf)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            norm = self.engine.get_global_grad_norm()
        if size > 1:
            import torch.distributed as dist

            t = torch.tensor([total], dtype=torch.float64, device=self.make_batch.device)
            dist.all_reduce(t)
            total = float(t.item()) / size
        entry = {"step": len(self.log) + 1, "epoch": epoch, "lr": lr, "loss": total, "examples": len(idxs)}
        if self.hp.get("projector_lr") is not None:
            entry["projector_lr"] = lrs[-1]  # its groups come last (`param_groups`)
        entry["grad_norm"] = None if norm is None else float(norm)
        if self.ref_topk is not None:
            entry["kl"] = self.kl_sum / len(idxs)
            self.kl_sum = 0.0
        if rewards:
            r = torch.cat(rewards)
            entry.update(
                chosen_reward=float(r[:, 0].mean()),
                rejected_reward=float(r[:, 1].mean()),
                margin=float((r[:, 0] - r[:, 1]).mean()),
                accuracy=float((r[:, 0] > r[:, 1]).float().mean()),
            )
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


def _peak_mem_mb(on_cuda: bool) -> float:
    import torch

    if on_cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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
    if objective not in ("sft", "dpo"):
        raise ValueError(f"objective {objective!r} trains nothing; expected 'sft' or 'dpo'")
    if hp.get("kl_lambda") and objective != "sft":
        raise ValueError("kl_lambda (per-token KL to the reference) applies to SFT objectives; DPO has its own reference")
    if hp["batch_size"] % hp["micro_batch_size"]:
        raise ValueError("batch_size must be a multiple of micro_batch_size")
    if hp.get("rejected_logps", "rejected_tokens") not in ("rejected_tokens", "top_other_token"):
        raise ValueError(f"rejected_logps: expected rejected_tokens or top_other_token, got {hp['rejected_logps']!r}")
    reference = hp.get("reference", "precomputed")
    if reference not in ("precomputed", "adapters_off"):
        raise ValueError(f"reference: expected precomputed or adapters_off, got {reference!r}")
    if reference == "adapters_off" and (objective == "dpo" or hp.get("kl_lambda")) and not hp.get("lora"):
        raise ValueError("reference: adapters_off switches LoRA off for the reference pass; without LoRA "
                         "(lora: null) use reference: precomputed")
    if reference == "adapters_off" and objective == "sft" and hp.get("kl_lambda"):
        raise ValueError("reference: adapters_off is implemented for DPO; the KL objective's reference is "
                         "precomputed (set reference: precomputed)")
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
    encoded, dropped = encode_examples(handle, examples, objective, hp["max_length"], image_root)
    if not encoded:
        raise ValueError(f"no trainable examples ({len(examples)} given, {dropped} dropped by max_length)")
    model = prepare_model(handle.model, hp, objective, handle.family, gradient_checkpointing)
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
        if use_ds:
            import deepspeed

            engine, _, _, scheduler = deepspeed.initialize(
                model=model,
                optimizer=optimizer,
                lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, factor),
                config=engine_config({**hp, "bf16": bf16}, world()[1]),
            )
            module, device = engine, engine.device
            dtype = torch.bfloat16 if bf16 else torch.float32  # the engine cast the weights
            autocast = contextlib.nullcontext
        else:
            device = torch.device(device_name)
            model.to(device)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            engine, module, dtype = None, model, getattr(torch, weights_dtype)
            # fp32 trained tensors, bf16 matmuls: mixed precision without a master-weight copy
            autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        # As applied: HF sets `gradient_checkpointing` on the modules it recomputes.
        checkpointing = any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
        runtime = describe(model, hp["micro_batch_size"], compute_dtype="bfloat16" if bf16 else "float32",
                           gradient_checkpointing=checkpointing)
        loop = _Loop(
            objective, hp, encoded, module, engine, model, optimizer, scheduler,
            BatchMaker(handle, image_root, hp["max_length"], device, dtype), autocast,
        )
        if (objective == "dpo" and reference == "precomputed") or hp.get("kl_lambda"):
            t = time.perf_counter()
            loop.reference() if objective == "dpo" else loop.reference_topk()
            loop.ref_s = time.perf_counter() - t
        module.train()
        t = time.perf_counter()
        loop.run(total_steps)
        train_s = time.perf_counter() - t
        rank, size = world()
        named = gather_trainable(model, use_ds)
        checkpoint.save(out_dir, model, named)
        if engine is not None:
            engine.destroy()

    steps = loop.log
    result = {
        "wall_s": time.perf_counter() - start,
        "train_s": train_s,
        "peak_mem_mb": _peak_mem_mb(on_cuda),
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
    }
    if loop.ref_topk is not None:
        result.update(ref_s=loop.ref_s, kl_lambda=hp["kl_lambda"], kl_topk=KL_TOPK, kl_first=steps[0]["kl"], kl_final=steps[-1]["kl"])
    if objective == "dpo":
        result.update(
            ref_s=loop.ref_s,  # adapters_off: reference passes inside train_s
            reference=reference,
            reward_margin_first=steps[0]["margin"],
            reward_margin_final=steps[-1]["margin"],
            reward_accuracy_final=steps[-1]["accuracy"],
            chosen_reward_final=steps[-1]["chosen_reward"],
            rejected_reward_final=steps[-1]["rejected_reward"],
        )
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
