"""`merge`: a model with a train stage's checkpoint merged into it, saved as a whole model directory.

Iterative methods (CSR) start iteration k from iteration k-1's result: this stage loads the model it
depends on (the base model, or the previous merge), applies the checkpoint the way evaluation does
(`matrix.methods.checkpoint.load_trained`: non-LoRA tensors, then the LoRA adapter merged), and writes a
llava-hf model directory with the tokenizer and processor of its input. Later stages use it exactly as
they use a `model` stage (`matrix.runner.kinds.model.model_dir`), so the chain is cached and resumed stage by
stage like everything else.
"""
from __future__ import annotations

from pathlib import Path

from matrix.runner.kinds.model import model_dir
from matrix.runner.placement import describe
from matrix.runner.stage import KINDS, Dtype, StageContext, StageKind, StageParams


@KINDS.register("merge")
class MergeStage(StageKind):
    VERSION = 1
    FRESH_PROCESS = True  # a whole model in memory: give it back when done
    LOADS_MODEL = True
    SKIP_KEY_FIELDS = frozenset({"dtype"})

    class Params(StageParams):
        dtype: Dtype = "float32"  # the merge runs, and the merged model is saved, in this dtype

    def run(self, params: Params, inputs, out: Path, ctx: StageContext):
        from matrix.methods.checkpoint import load_trained, save_model_dir

        src = model_dir(inputs["model"])
        template = inputs["model"].result["template"]
        handle = load_trained(src, inputs["checkpoint"].dir, template=template, dtype=params.dtype, device=ctx.device,
                              family=inputs["model"].result.get("family"))
        save_model_dir(handle, src, out)
        return {"model_dir": ".", "template": template, "family": handle.family.id,
                "parameters": sum(p.numel() for p in handle.model.parameters()), "runtime": describe(handle.model, None)}
