"""`evaluate`: answer a benchmark's questions with the official decode settings and score them.

With `benchmarks[].shards: N` the work splits: N evaluate stages with `shard: [i, N]` each answer a
contiguous slice (each its own Ray task, so its own GPU), and the cell's evaluate stage with
`shards: N` reads their answers in order and scores them all together (it loads no model). The
answers and scores equal one unsharded stage's: greedy decoding does not depend on the batch.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PIL import Image

from matrix.spec import BatchSize
from matrix.runner.kinds.data import resolve
from matrix.runner.kinds.model import model_dir
from matrix.runner.placement import describe
from matrix.runner.stage import KINDS, Dtype, StageContext, StageKind, StageParams


@KINDS.register("evaluate")
class EvaluateStage(StageKind):
    VERSION = 1
    LOADS_MODEL = True  # answer stages; the stage of all shards has no model input, loads none, holds no GPU
    SKIP_KEY_FIELDS = frozenset({"batch_size", "dtype", "judge_settings"})

    class Params(StageParams):
        benchmark: str
        limit: int | None = None
        max_new_tokens: int | None = None
        num_beams: int = 1
        judge: str | None = None  # the judge's key (its model): part of the stage key
        template: dict[str, Any] | None = None  # a grading template: path and content hash
        shard: tuple[int, int] | None = None  # answer slice i of n
        shards: int | None = None  # score the answers of n shard stages
        answers: dict[str, Any] | None = None  # an external row's answer file (path, content hash): scoring only
        batch_size: BatchSize = 16
        dtype: Dtype = "float32"
        judge_settings: dict[str, Any] | None = None  # a JudgeSpec: how to reach the judge

    def run(self, params: Params, inputs, out: Path, ctx: StageContext):
        from matrix.benchmarks.base import BENCHMARKS

        template = params.template
        bench = BENCHMARKS.get(params.benchmark)(**({"template_path": Path(template["path"])} if template else {}))
        answer_file = (params.answers or {}).get("path")  # an external row's answers: scoring only
        samples = bench.load(resolve(inputs["bench"], "root"), limit=params.limit, images=answer_file is None)
        runtime = None
        if params.shard is not None:  # answer one slice; the evaluate stage of all shards scores them
            i, n = params.shard
            lo, hi = shard_bounds(len(samples), i, n)
            answers, elapsed, runtime = self._answer(params, inputs, bench, samples[lo:hi], ctx)
            self._write_answers(out, bench, samples[lo:hi], answers)
            return {"questions": hi - lo, "shard": [i, n], "answers_per_s": (hi - lo) / max(elapsed, 1e-9),
                    "runtime": runtime}
        if answer_file is not None:
            from matrix.scoring import match_answers, read_answers

            answers, _ = match_answers(samples, read_answers(Path(answer_file)), Path(answer_file), bench)
            elapsed = None
        elif params.shards:
            answers, elapsed = [], 0.0
            for i in range(params.shards):
                dep = inputs[f"shard{i}"]
                with open(dep.dir / "answers.jsonl", encoding="utf-8") as f:
                    answers += [json.loads(line)["text"] for line in f if line.strip()]
                elapsed += dep.result["questions"] / max(dep.result["answers_per_s"], 1e-9)
            if len(answers) != len(samples):
                raise ValueError(f"{params.benchmark}: the shards answered {len(answers)} of {len(samples)} questions")
        else:
            answers, elapsed, runtime = self._answer(params, inputs, bench, samples, ctx)
        judge = None
        if bench.needs_judge:
            from matrix.benchmarks.judge import open_stage_judge

            judge = open_stage_judge(params.judge_settings, params.judge, f"{params.benchmark}'s scoring")
        scored = bench.score(samples, answers, judge=judge)
        self._write_answers(out, bench, samples, answers)
        with open(out / "scores.jsonl", "w") as f:
            for row in scored.per_sample:
                f.write(json.dumps(row, default=str) + "\n")
        (out / "metrics.json").write_text(json.dumps(scored.metrics, indent=1))
        result = {"metrics": scored.metrics, "questions": len(samples)}
        if elapsed is not None:
            result["answers_per_s"] = len(samples) / max(elapsed, 1e-9)
        else:
            result["answers_from"] = answer_file
        if runtime is not None:
            result["runtime"] = runtime
        if judge is not None:
            result["judge"] = {**judge.describe(), **judge.usage()}
        return result

    @staticmethod
    def _answer(params: Params, inputs, bench, samples, ctx: StageContext) -> tuple[list[str], float, dict]:
        from matrix.models.handle import load

        model = inputs["model"]
        placement = dict(template=model.result["template"], dtype=params.dtype, device=ctx.device,
                         family=model.result.get("family"))
        if "checkpoint" in inputs:
            from matrix.methods.checkpoint import load_trained

            handle = load_trained(model_dir(model), inputs["checkpoint"].dir, **placement)
        else:
            handle = load(model_dir(model), **placement)
        images = [Image.open(s.image).convert("RGB") if s.image is not None else None for s in samples]
        start = time.time()
        answers = handle.generate(images, [s.question for s in samples],
                                  max_new_tokens=params.max_new_tokens or bench.max_new_tokens,
                                  batch_size=params.batch_size, num_beams=params.num_beams)
        return answers, time.time() - start, describe(handle.model, handle.batch_size)

    @staticmethod
    def _write_answers(out: Path, bench, samples, answers) -> None:
        """LLaVA's answer-file fields (its id type, its recorded prompt), so its scripts read ours."""
        with open(out / "answers.jsonl", "w") as f:
            for s, a in zip(samples, answers):
                row = {"question_id": s.record_id, "prompt": bench.official_prompt(s), "text": a}
                f.write(json.dumps(row) + "\n")


def shard_bounds(n: int, i: int, shards: int) -> tuple[int, int]:
    """Questions [lo, hi) of shard i of `shards`: contiguous, sizes differing by at most one."""
    return n * i // shards, n * (i + 1) // shards
