"""The training engine: one interface over the plain PyTorch loop and DeepSpeed ZeRO.

The trainer's loop (`matrix.methods.trainer.Loop`) runs forwards through `engine.module`, hands each
micro-batch's weighted loss to `backward(loss, last)` and closes the global batch with `step()`; the
engines differ only in who accumulates, clips and steps:
  * `PlainEngine`: autograd accumulates; `step()` clips at `max_grad_norm`, steps AdamW and the schedule;
  * `DeepSpeedEngine`: the DeepSpeed engine owns accumulation, clipping, ZeRO partitioning and the
    schedule; we set its accumulation boundary ourselves so a short last batch still makes one step.
Build one with `build(...)` inside `matrix.methods._dist.process_group` when DeepSpeed is used.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable


class Engine:
    """What the loop needs of an engine. `module` is what forward runs through, `model` the (PEFT-wrapped)
    model itself; `device`/`dtype` are where and in what the batches' pixel values go."""

    module: Any
    model: Any
    device: Any
    dtype: Any

    def autocast(self):
        return contextlib.nullcontext()

    def backward(self, loss, last: bool) -> None:
        """Accumulate the gradient of one micro-batch's (already weighted) loss; `last`: the global batch's last."""
        raise NotImplementedError

    def step(self) -> float | None:
        """Close the global batch: clip, optimizer and schedule step, zero the gradients; the gradient norm."""
        raise NotImplementedError

    def lrs(self) -> list[float]:
        """The current lr of each parameter group (the projector's groups last, `_setup.param_groups`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the engine holds (DeepSpeed's hooks and buffers)."""


class PlainEngine(Engine):
    def __init__(self, model, optimizer, scheduler, device, dtype, bf16: bool, max_grad_norm: float | None):
        import torch

        self.model = self.module = model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.device, self.dtype = device, dtype
        self.bf16, self.max_grad_norm = bf16, max_grad_norm
        model.to(device)
        self._torch = torch

    def autocast(self):
        # fp32 trained tensors, bf16 matmuls: mixed precision without a master-weight copy
        if self.bf16:
            return self._torch.autocast(self.device.type, dtype=self._torch.bfloat16)
        return contextlib.nullcontext()

    def backward(self, loss, last: bool) -> None:
        loss.backward()

    def step(self) -> float | None:
        norm = self._torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm or math.inf)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return None if norm is None else float(norm)

    def lrs(self) -> list[float]:
        return self.scheduler.get_last_lr()


class DeepSpeedEngine(Engine):
    def __init__(self, model, optimizer, factor: Callable[[int], float], config: dict, bf16: bool):
        import deepspeed
        import torch

        self.model = model
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, factor),
            config=config,
        )
        self.module, self.device = self.engine, self.engine.device
        self.dtype = torch.bfloat16 if bf16 else torch.float32  # the engine cast the weights

    def backward(self, loss, last: bool) -> None:
        # We own the accumulation boundary, so a short last batch still makes exactly one step.
        self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss, scale_wrt_gas=False)
        self.engine.step()

    def step(self) -> float | None:
        norm = self.engine.get_global_grad_norm()
        return None if norm is None else float(norm)

    def lrs(self) -> list[float]:
        return self.scheduler.get_last_lr()

    def close(self) -> None:
        self.engine.destroy()


def build(model, optimizer, factor: Callable[[int], float], hp: dict, *, deepspeed_config: dict | None,
          bf16: bool, device, weights_dtype) -> Engine:
    """The engine for these settings: DeepSpeed when `deepspeed_config` is given (inside a process group),
    the plain loop otherwise (its LambdaLR schedule built here from `factor`)."""
    import torch

    if deepspeed_config is not None:
        return DeepSpeedEngine(model, optimizer, factor, deepspeed_config, bf16)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return PlainEngine(model, optimizer, scheduler, torch.device(device), weights_dtype, bf16, hp["max_grad_norm"])
