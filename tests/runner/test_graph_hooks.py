"""The stage graph asks a method what its row evaluates (`Method.evaluated_model`, `evaluated_checkpoint`,
`answer_files`, `answers_questions`) and never decides by the method's name: a toy method defined in
this file alone gets the stages `external` gets."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from matrix import api
from matrix.registry import METHODS
from matrix.methods.baseline import Baseline


class Released(Baseline):
    """A toy row: a finished checkpoint (`params.folder`) on the cell's base model, or answer files only."""

    id = "toy-released"

    @classmethod
    def evaluated_checkpoint(cls, params: dict) -> Path | None:
        return Path(params["folder"]) if "folder" in params else None

    @classmethod
    def answer_files(cls, params: dict) -> dict[str, Path]:
        return {bench: Path(path) for bench, path in params.get("answers", {}).items()}

    @classmethod
    def answers_questions(cls, params: dict) -> bool:
        return "folder" in params


@pytest.fixture
def released():
    METHODS.register("toy-released")(Released)
    yield
    METHODS.unregister("toy-released")


def plan(tmp_path, params: str):
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: hooks
        output_dir: {tmp_path / 'runs'}
        base_models:
          tiny: {{family: tiny}}
        methods:
          - {{id: rel, method: toy-released, params: {params}}}
        benchmarks:
          - {{id: pope, synthetic: 4}}
          - {{id: mme, synthetic: 2}}
        """))
    return api.plan(api.load(path))


def test_a_checkpoint_the_method_names_is_evaluated_on_the_base_model(released, tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "adapter.bin").write_text("x")
    planned = plan(tmp_path, f"{{folder: {folder}}}")
    (cell,) = planned.graph.cells
    assert cell.train is None
    answering = [s for s in planned.graph.stages.values() if s.kind == "evaluate" and "model" in s.deps]
    assert sorted(s.params["benchmark"] for s in answering) == ["mme", "pope"]
    for stage in answering:
        assert stage.deps["checkpoint"].kind == "checkpoint"
        assert stage.deps["checkpoint"].params["path"] == str(folder)
        assert stage.deps["model"].params["family"] == "tiny"


def test_answer_files_are_scored_and_a_row_without_a_model_has_no_other_numbers(released, tmp_path):
    answers = tmp_path / "pope.jsonl"
    answers.write_text('{"question_id": 1, "text": "yes"}\n')
    planned = plan(tmp_path, f"{{answers: {{pope: {answers}}}}}")
    (cell,) = planned.graph.cells
    assert set(cell.evaluate) == {"pope"}  # no model: no MME number
    stage = cell.evaluate["pope"]
    assert set(stage.deps) == {"bench"} and stage.params["answers"]["path"] == str(answers)
