"""`construct`: a method builds its training set from the subset and the model's own answers.

Methods that need more get it here: the base model (a `model` dependency, SIMA's self-critic) and
the judge (`ctx.runtime["judge"]`, a JudgeSpec dict; nSFT's LLM path). The judge's usage is recorded
in the stage result, as evaluate does.
"""
from __future__ import annotations

import json
from pathlib import Path

from runner.kinds.data import resolve
from runner.kinds.generate import load_responses
from runner.kinds.subset import load_subset
from runner.stage import KINDS, StageKind


@KINDS.register("construct")
class ConstructStage(StageKind):
    VERSION = 1

    def run(self, params, inputs, out: Path, ctx):
        from methods.base import METHODS, Env

        method = METHODS.get(params["method"])()
        records = load_subset(inputs["data"], inputs["subset"])
        responses = {name.split(".", 1)[1]: load_responses(inp) for name, inp in inputs.items()
                     if name.startswith("responses.")}
        env = Env(image_root=resolve(inputs["data"], "image_root"), seed=int(params.get("seed", 0)),
                  files={name: Path(f["path"]) for name, f in params.get("files", {}).items()})
        for name, path in env.files.items():
            if not path.exists():
                raise FileNotFoundError(f"{path}: not found; {params['method']} reads it as its {name!r}")
        if "model" in inputs:
            from runner.kinds.model import model_dir

            env.model_dir, env.template = model_dir(inputs["model"]), inputs["model"].result["template"]
        if params.get("judge"):
            from benchmarks.judge import open_judge
            from matrix.spec import JudgeSpec

            runtime = (ctx.runtime or {}).get("judge") if ctx is not None else None
            if not runtime:
                raise ValueError(f"{params['method']}: construction needs the judge, but no judge settings were given")
            spec = JudgeSpec.model_validate(runtime)
            if spec.key() != params["judge"]:
                raise ValueError(f"judge {spec.key()!r} differs from the stage's {params['judge']!r}")
            env.judge = open_judge(spec)
        examples, stats = method.construct(records, responses, params["params"], env)
        if not examples:
            raise ValueError(f"{params['method']}: construction produced no training examples ({stats})")
        if "sft_mix" in inputs:  # a dataset trained together with the constructed examples, images absolute
            from runner.kinds.data import read_records

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
        return result


def load_examples(stage_input) -> list[dict]:
    return json.loads((stage_input.dir / "examples.json").read_text())
