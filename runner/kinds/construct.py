"""`construct`: a method builds its training set from the subset and the model's own answers."""
from __future__ import annotations

import json
from pathlib import Path

from runner.kinds.generate import load_responses
from runner.kinds.subset import load_subset
from runner.stage import KINDS, StageKind


@KINDS.register("construct")
class ConstructStage(StageKind):
    VERSION = 1

    def run(self, params, inputs, out: Path, ctx):
        from methods.base import METHODS

        method = METHODS.get(params["method"])()
        records = load_subset(inputs["data"], inputs["subset"])
        responses = {name.split(".", 1)[1]: load_responses(inp) for name, inp in inputs.items()
                     if name.startswith("responses.")}
        examples, stats = method.construct(records, responses, params["params"])
        if not examples:
            raise ValueError(f"{params['method']}: construction produced no training examples ({stats})")
        (out / "examples.json").write_text(json.dumps(examples))
        return {"examples": len(examples), **stats}


def load_examples(stage_input) -> list[dict]:
    return json.loads((stage_input.dir / "examples.json").read_text())
