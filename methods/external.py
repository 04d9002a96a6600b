"""`external`: a checkpoint trained elsewhere, evaluated as a row of the table (nothing constructed or
trained here) — a released model (LLaVA-RLHF's PPO model, released SeVa/SIMA weights) or one of another
run's train stages, next to this run's own methods.

One spec row per checkpoint: `{id: ppo, method: external, label: PPO, params: {...}}` with either
- `model: {family: llava, path: /models/llava-rlhf-ppo-hf}`: a whole model (any `base_models` entry's
  keys), evaluated instead of the cell's base model; or
- `checkpoint: /runs/q/artifacts/train/<key>`: what a `train` stage writes (LoRA adapter and trained
  non-LoRA tensors), applied to the cell's base model, as matrix's own rows are.
Like the baseline, an external row has one cell per base model and seed, shown in every dataset group.
"""
from __future__ import annotations

from methods.base import METHODS, Method, Responses


@METHODS.register("external")
class External(Method):
    id = "external"
    objective = "none"
    responses = ()
    defaults: dict = {}

    @classmethod
    def check_params(cls, params: dict) -> list[str]:
        given = [k for k in ("model", "checkpoint") if params.get(k)]
        if len(given) != 1:
            return ["external: give exactly one of 'model' (a whole model: family, path...) or 'checkpoint' "
                    "(a train stage's output folder)"]
        extra = sorted(set(params) - {"model", "checkpoint"})
        if extra:
            return [f"external: unknown params {extra}; known: model, checkpoint"]
        if "model" in params:
            from pydantic import ValidationError

            from matrix.spec import BaseModelSpec

            try:
                BaseModelSpec.model_validate(params["model"])
            except ValidationError as e:
                return [f"external: model: {err['msg']} at {'.'.join(map(str, err['loc']))}" for err in e.errors()]
        return []

    def construct(self, records: list[dict], responses: Responses, params: dict, env=None) -> tuple[list[dict], dict]:
        return [], {"records": len(records), "examples": 0}
