"""`evaluate`: answer a benchmark's questions with the official decode settings and score them."""
from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image

from runner.kinds.data import resolve
from runner.kinds.model import model_dir
from runner.stage import KINDS, StageKind


@KINDS.register("evaluate")
class EvaluateStage(StageKind):
    VERSION = 1

    def run(self, params, inputs, out: Path, ctx):
        from benchmarks.base import BENCHMARKS
        from matrix.models.handle import load

        template = inputs["model"].result["template"]
        if "checkpoint" in inputs:
            from methods.checkpoint import load_trained

            handle = load_trained(model_dir(inputs["model"]), inputs["checkpoint"].dir, template=template)
        else:
            handle = load(model_dir(inputs["model"]), template=template)
        bench = BENCHMARKS.get(params["benchmark"])()
        samples = bench.load(resolve(inputs["bench"], "root"), limit=params.get("limit"))
        images = [Image.open(s.image).convert("RGB") if s.image is not None else None for s in samples]
        start = time.time()
        answers = handle.generate(images, [s.question for s in samples],
                                  max_new_tokens=params.get("max_new_tokens") or bench.max_new_tokens, batch_size=16,
                                  num_beams=params.get("num_beams", 1))
        elapsed = time.time() - start
        judge = None
        if bench.needs_judge:
            from benchmarks.judge import open_judge
            from matrix.spec import JudgeSpec

            judge = open_judge(JudgeSpec.model_validate(ctx.runtime["judge"]))
        scored = bench.score(samples, answers, judge=judge)
        with open(out / "answers.jsonl", "w") as f:
            for s, a in zip(samples, answers):
                f.write(json.dumps({"question_id": s.question_id, "prompt": s.question, "text": a}) + "\n")
        with open(out / "scores.jsonl", "w") as f:
            for row in scored.per_sample:
                f.write(json.dumps(row, default=str) + "\n")
        (out / "metrics.json").write_text(json.dumps(scored.metrics, indent=1))
        result = {"metrics": scored.metrics, "questions": len(samples), "answers_per_s": len(samples) / max(elapsed, 1e-9)}
        if judge is not None:
            result["judge"] = {**judge.describe(), **judge.usage()}
        return result
