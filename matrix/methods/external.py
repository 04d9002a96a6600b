"""`external`: a checkpoint trained elsewhere, evaluated as a row of the table (nothing constructed or
trained here) — a released model (LLaVA-RLHF's PPO model, released SeVa/SIMA weights) or one of another
run's train stages, next to this run's own methods.

One spec row per checkpoint: `{id: ppo, method: external, label: PPO, params: {...}}` with either
- `model: {family: llava, path: /models/llava-rlhf-ppo-hf}`: a whole model (any `base_models` entry's
  keys), evaluated instead of the cell's base model; or
- `checkpoint: /runs/q/artifacts/train/<key>`: what a `train` stage writes (LoRA adapter and trained
  non-LoRA tensors), applied to the cell's base model, as matrix's own rows are; or
- `from_run: {run: runs/quickstart, cell: cont-sft}`: the same, found by name in another run: the done
  train stage of that run whose cell label is `cell` or starts with `cell/` (one only; give the whole
  label, e.g. `cont-sft/tiny/shapes-vqa-1000`, when the run trained the method on several datasets).
Like the baseline, an external row has one cell per base model and seed, shown in every dataset group.

`answers: {pope: FILE, mme: FILE}` gives answer files per benchmark (LLaVA's `model_vqa*` output, e.g. a
paper's published answers, or another run's `answers.jsonl`): those benchmarks are scored from the file
(the same scorer and judge as the other rows, no model loaded, no image read). With `answers` the model
source is optional; a row with answers only has numbers just for the benchmarks it has files for.
"""
from __future__ import annotations

from pathlib import Path

from matrix.methods.base import METHODS
from matrix.methods.baseline import Baseline


SOURCES = ("model", "checkpoint", "from_run")
ANSWERS = "answers"


def answer_file(params: dict, benchmark: str) -> Path | None:
    """The answer file an external row gives for `benchmark` (a spec benchmark id), if any."""
    path = (params.get(ANSWERS) or {}).get(benchmark)
    return Path(path).expanduser().resolve() if path is not None else None


def has_model(params: dict) -> bool:
    return any(params.get(k) for k in SOURCES)


def find_checkpoint(run: str, cell: str) -> Path:
    """The artifact folder of the done train stage of run `run` whose cell label is `cell` (or starts with
    `cell/`); a clear error when the run, or exactly one such stage, is not there."""
    from matrix.errors import UserError
    from matrix.store import Store

    run_dir = Path(run).expanduser().resolve()
    if not (run_dir / "matrix.db").exists():
        raise UserError(f"external from_run: {run_dir} holds no run (no matrix.db); run its spec first")
    store = Store(run_dir)
    try:
        found = [(key, rec) for key, rec in store.stages().items() if rec.kind == "train" and rec.status == "done"
                 and (rec.label == f"train {cell}" or rec.label.startswith(f"train {cell}/"))]
        if len(found) != 1:
            labels = sorted(rec.label[len("train "):] for rec in store.stages().values() if rec.kind == "train"
                            and rec.status == "done")
            raise UserError(f"external from_run: {len(found)} finished train stages of {run_dir} match cell "
                            f"{cell!r}; expected one. Finished: {', '.join(labels) or 'none'}")
        return store.artifact_dir(found[0][0], "train")
    finally:
        store.close()


@METHODS.register("external")
class External(Baseline):
    """Untrained like the baseline (nothing constructed); what it evaluates is another model."""

    id = "external"

    @classmethod
    def check_params(cls, params: dict) -> list[str]:
        given = [k for k in SOURCES if params.get(k)]
        answers = params.get(ANSWERS)
        if len(given) > 1 or (not given and not answers):
            return ["external: give exactly one of 'model' (a whole model: family, path...), 'checkpoint' "
                    "(a train stage's output folder) or 'from_run' ({run: DIR, cell: LABEL}), or 'answers' "
                    "({benchmark: answer file}), or both"]
        extra = sorted(set(params) - set(SOURCES) - {ANSWERS})
        if extra:
            return [f"external: unknown params {extra}; known: {', '.join(SOURCES + (ANSWERS,))}"]
        if answers is not None:
            if not isinstance(answers, dict) or not answers or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in answers.items()):
                return ["external: answers takes {benchmark id: answer file}, e.g. {pope: answers/pope.jsonl}"]
            missing = [f"{k}: {v}" for k, v in answers.items() if not Path(v).expanduser().is_file()]
            if missing:
                return [f"external: answers: no such file ({m}); expected LLaVA's answer-file JSON lines"
                        for m in missing]
        if "from_run" in params:
            ref = params["from_run"]
            if not isinstance(ref, dict) or set(ref) != {"run", "cell"}:
                return ["external: from_run takes {run: RUN_DIR, cell: CELL_LABEL}"]
        if "model" in params:
            from pydantic import ValidationError

            from matrix.spec import BaseModelSpec

            try:
                BaseModelSpec.model_validate(params["model"])
            except ValidationError as e:
                return [f"external: model: {err['msg']} at {'.'.join(map(str, err['loc']))}" for err in e.errors()]
        return []

    @classmethod
    def evaluated_model(cls, params: dict) -> dict | None:
        return params.get("model") or None

    @classmethod
    def evaluated_checkpoint(cls, params: dict) -> Path | None:
        if params.get("model"):
            return None
        if params.get("from_run"):
            return find_checkpoint(**params["from_run"])
        if params.get("checkpoint"):
            return Path(params["checkpoint"]).expanduser().resolve()
        return None

    @classmethod
    def answer_files(cls, params: dict) -> dict[str, Path]:
        return {bench: Path(path).expanduser().resolve() for bench, path in (params.get(ANSWERS) or {}).items()}

    @classmethod
    def answers_questions(cls, params: dict) -> bool:
        return has_model(params)
