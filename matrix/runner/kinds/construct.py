"""`construct`: a method builds its training set from the subset and the model's own answers.

Methods that need more get it here: the base model (a `model` dependency, SIMA's self-critic), loaded
on the stage's device in the base model's dtype, and the judge (`judge_settings`, a JudgeSpec dict;
nSFT's LLM path). The judge's usage, and how the model ran, are recorded in the stage result, as
evaluate does.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matrix.spec import BatchSize
from matrix.runner.kinds.data import resolve
from matrix.runner.kinds.generate import load_responses
from matrix.runner.kinds.subset import load_subset
from matrix.runner.stage import KINDS, Dtype, StageContext, StageKind, StageParams


@KINDS.register("construct")
class ConstructStage(StageKind):
    VERSION = 1
    LOADS_MODEL = True  # with a model input (SIMA's critic); otherwise nothing is placed
    SKIP_KEY_FIELDS = frozenset({"dtype", "batch_size", "judge_settings"})

    class Params(StageParams):
        method: str
        version: str
        params: dict[str, Any]  # the method's construction settings
        files: dict[str, dict[str, Any]] = {}  # `Method.input_files`: path and fingerprint by name
        judge: str | None = None  # the judge's key (its model)
        seed: int = 0
        dtype: Dtype = "float32"
        batch_size: BatchSize = 16  # the model's answering batch (SIMA's critic, unless its params set one)
        judge_settings: dict[str, Any] | None = None  # a JudgeSpec: how to reach the judge

    def run(self, params: Params, inputs, out: Path, ctx: StageContext):
        from matrix.methods.base import METHODS, Env

        method = METHODS.get(params.method)()
        records = load_subset(inputs["data"], inputs["subset"])
        responses = {name.split(".", 1)[1]: load_responses(inp) for name, inp in inputs.items()
                     if name.startswith("responses.")}
        env = Env(image_root=resolve(inputs["data"], "image_root"), seed=params.seed,
                  files={name: Path(f["path"]) for name, f in params.files.items()}, batch_size=params.batch_size)
        for name, path in env.files.items():
            if not path.exists():
                raise FileNotFoundError(f"{path}: not found; {params.method} reads it as its {name!r}")
        if "model" in inputs:
            from matrix.runner.kinds.model import model_dir

            model = inputs["model"]
            env.model_dir, env.template = model_dir(model), model.result["template"]
            env.family, env.dtype, env.device = model.result.get("family"), params.dtype, ctx.device
        if params.judge:
            from matrix.benchmarks.judge import open_stage_judge

            env.judge = open_stage_judge(params.judge_settings, params.judge, f"{params.method}: construction")
        examples, stats = method.construct(records, responses, params.params, env)
        if not examples:
            raise ValueError(f"{params.method}: construction produced no training examples ({stats})")
        if "sft_mix" in inputs:  # a dataset trained together with the constructed examples, images absolute
            from matrix.runner.kinds.data import read_records

            root = resolve(inputs["sft_mix"], "image_root").resolve()
            mix = [{**r, "image": str(root / r["image"])} if r.get("image") else r
                   for r in read_records(resolve(inputs["sft_mix"], "data_file"))]
            stats = {**stats, "constructed": len(examples), "sft_mix": len(mix), "examples": len(examples) + len(mix)}
            examples = examples + mix
        (out / "examples.json").write_text(json.dumps(examples))
        trace = getattr(method, "trace", None)  # e.g. SIMA's critic replies and verdicts, for inspection
        if trace:
            with open(out / "trace.jsonl", "w") as f:
                for row in trace:
                    f.write(json.dumps(row) + "\n")
        result = {"examples": len(examples), **stats}
        if env.judge is not None:
            result["judge"] = {**env.judge.describe(), **env.judge.usage()}
        if env.loaded is not None:
            from matrix.runner.placement import describe

            result["runtime"] = describe(env.loaded.model, env.loaded.batch_size)
        return result


def load_examples(stage_input) -> list[dict]:
    return json.loads((stage_input.dir / "examples.json").read_text())
