"""`external` rows: a checkpoint from elsewhere (a train stage's folder, or a whole model) evaluated next
to the run's own methods, with nothing constructed or trained for it."""
from __future__ import annotations

import json
import textwrap

import pytest

from matrix import api
from matrix.errors import SpecError
from matrix.specfile import load_spec
from matrix.methods.base import METHODS
from matrix.methods.trainer import train
from matrix.runner.kinds.checkpoint import CheckpointStage
from matrix.runner.kinds.evaluate import EvaluateStage
from matrix.runner.stage import StageContext, StageInput

SPEC = """\
name: ext
base_models:
  tiny: {{family: tiny}}
datasets:
  d: {{source: synthetic, kind: ocrvqa, size: 60}}
scales: [20]
methods:
  - baseline
  - cont-sft
{rows}
benchmarks:
  - {{id: pope, synthetic: 4}}
"""


def write(tmp_path, rows: str):
    p = tmp_path / "spec.yaml"
    p.write_text(SPEC.format(rows=textwrap.indent(rows, "  ")))
    return p


def test_two_external_rows_evaluate_their_own_model_or_checkpoint_and_train_nothing(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    rows = (f"- {{id: mine, method: external, label: Mine, params: {{checkpoint: {ckpt}}}}}\n"
            "- {id: shipped, method: external, params: {model: {family: tiny}}}\n")
    planned = api.plan(load_spec(write(tmp_path, rows)))
    cells = {cs.cell.method: cs for cs in planned.graph.cells}
    assert set(cells) == {"baseline", "cont-sft", "mine", "shipped"}
    assert cells["mine"].train is None and cells["mine"].cell.dataset is None  # one cell per base model
    mine = cells["mine"].evaluate["pope"]
    assert mine.deps["checkpoint"].kind == "checkpoint" and mine.deps["checkpoint"].params["path"] == str(ckpt)
    # the whole-model row names the same model as the base: one model stage, no checkpoint
    shipped, base = cells["shipped"].evaluate["pope"], cells["baseline"].evaluate["pope"]
    assert "checkpoint" not in shipped.deps and shipped.deps["model"].key == base.deps["model"].key
    assert [s.kind for s in planned.graph.stages.values()].count("train") == 1  # cont-sft only


@pytest.mark.parametrize("params, message", [
    ("{}", "exactly one of 'model'"),
    ("{checkpoint: /x, model: {family: tiny}}", "exactly one of 'model'"),
    ("{model: {famly: tiny}}", "external: model:"),
])
def test_external_params_are_checked(tmp_path, params, message):
    with pytest.raises(SpecError, match=message):
        load_spec(write(tmp_path, f"- {{id: e, method: external, params: {params}}}\n"))


def test_an_unknown_plugin_named_by_method_is_reported(tmp_path):
    with pytest.raises(SpecError, match="unknown method 'externall'"):
        load_spec(write(tmp_path, "- {id: e, method: externall}\n"))


def test_a_copied_checkpoint_evaluates_like_the_original(tiny_world, tmp_path, hp):
    examples, _ = METHODS.get("cont-sft")().construct(tiny_world.records, {}, {})
    trained = tmp_path / "trained"
    train(tiny_world.base, examples, tiny_world.image_root, "sft", hp(epochs=1), trained)
    ctx = StageContext(tmp_path, 1, 0, "k", "t")
    (tmp_path / "copy").mkdir()
    result = CheckpointStage().execute({"path": str(trained)}, {}, tmp_path / "copy", ctx)
    assert result["adapter"] and (tmp_path / "copy" / "non_lora_trainables.safetensors").exists()

    from matrix.world.benchmarks import synthesize_benchmark

    synthesize_benchmark("pope", tmp_path / "bench", 4, seed=0)
    inputs = {"model": StageInput(tiny_world.base.parent, {"model_dir": tiny_world.base.name, "template": "plain_v1"}),
              "bench": StageInput(tmp_path / "bench", {"root": "."})}
    params = {"benchmark": "pope", "limit": None, "max_new_tokens": 4}
    scores = {}
    for name, ckpt in (("original", trained), ("copy", tmp_path / "copy")):
        out = tmp_path / f"eval-{name}"
        out.mkdir()
        EvaluateStage().execute(params, {**inputs, "checkpoint": StageInput(ckpt, {})}, out, ctx)
        scores[name] = (out / "answers.jsonl").read_text()
    assert scores["copy"] == scores["original"]


def test_a_folder_that_is_no_checkpoint_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.json").write_text(json.dumps({}))
    (tmp_path / "out").mkdir()
    with pytest.raises(FileNotFoundError, match="non_lora_trainables.safetensors"):
        CheckpointStage().execute({"path": str(tmp_path / "src")}, {}, tmp_path / "out", StageContext(tmp_path, 1, 0, "k", "t"))


def _answer_file(tmp_path, right: int) -> tuple:
    """A synthetic POPE folder and an answer file in LLaVA's format: the first `right` answers correct."""
    from matrix.benchmarks.base import BENCHMARKS
    from matrix.world.benchmarks import synthesize_benchmark

    bench = BENCHMARKS.get("pope")()
    synthesize_benchmark(bench.id, tmp_path / "bench", 4, seed=0)
    samples = bench.load(tmp_path / "bench")
    flip = {"yes": "No", "no": "Yes"}
    rows = [{"question_id": s.record_id, "prompt": s.question,
             "text": s.meta["label"].capitalize() if i < right else flip[s.meta["label"]], "model_id": "paper"}
            for i, s in enumerate(samples)]
    path = tmp_path / "published.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))  # matched by id, not order
    return path, samples


def test_an_answers_row_scores_its_file_and_loads_no_model(tmp_path):
    path, _ = _answer_file(tmp_path, right=0)
    rows = f"- {{id: paper, method: external, label: Published, params: {{answers: {{pope: {path}}}}}}}\n"
    planned = api.plan(load_spec(write(tmp_path, rows)))
    cells = {cs.cell.method: cs for cs in planned.graph.cells}
    stage = cells["paper"].evaluate["pope"]
    assert set(stage.deps) == {"bench"} and stage.params["answers"]["path"] == str(path)
    assert cells["paper"].train is None
    # a row with a model too: the benchmark with a file is scored from it, no answering stage for it
    rows += "- {id: both, method: external, params: {model: {family: tiny}, answers: {pope: " + str(path) + "}}}\n"
    both = {cs.cell.method: cs for cs in api.plan(load_spec(write(tmp_path, rows))).graph.cells}["both"]
    assert set(both.evaluate["pope"].deps) == {"bench"}


def test_the_answer_file_stage_scores_as_matrix_score(tmp_path):
    from matrix.scoring import score

    path, samples = _answer_file(tmp_path, right=5)
    out = tmp_path / "out"
    out.mkdir()
    params = {"benchmark": "pope", "limit": None, "answers": {"path": str(path), "sha": "x"}}
    result = EvaluateStage().execute(params, {"bench": StageInput(tmp_path / "bench", {"root": "."})}, out,
                                     StageContext(tmp_path, 1, 0, "k", "t"))
    # 5 of the questions answered right, the rest wrong: by POPE's rules, per split and mean
    assert result["metrics"] == score("pope", tmp_path / "bench", path).metrics
    assert result["questions"] == len(samples) and result["answers_from"] == str(path)
    written = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in written] == [s.record_id for s in samples]  # POPE's int ids kept


@pytest.mark.parametrize("answers, message", [
    ("[a.jsonl]", "answers takes"),
    ("{pope: /no/such/file.jsonl}", "no such file"),
])
def test_answers_params_are_checked(tmp_path, answers, message):
    with pytest.raises(SpecError, match=message):
        load_spec(write(tmp_path, f"- {{id: e, method: external, params: {{answers: {answers}}}}}\n"))


def test_answers_for_a_benchmark_the_spec_lacks_are_refused(tmp_path):
    from matrix.errors import UserError

    path, _ = _answer_file(tmp_path, right=0)
    rows = f"- {{id: paper, method: external, params: {{answers: {{mme: {path}}}}}}}\n"
    with pytest.raises(UserError, match="params.answers names mme, which the spec's benchmarks do not list"):
        api.plan(load_spec(write(tmp_path, rows)))
