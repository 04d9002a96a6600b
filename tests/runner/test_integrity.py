"""Damaged artifacts on embedded Ray with diagnostic `sleep` stages: a stored artifact that no longer
matches its manifest is dropped with a warning naming it and computed again, never read or adopted;
`matrix verify` lists it and exits 1."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from matrix.cli import app
from matrix.spec import ResourcesSpec
from matrix.store import Store
from matrix.runner.executor import Executor
from matrix.runner import sweep
from matrix.runner.graph import StageGraph
from matrix.runner.plan import Planned
from matrix.runner.stage import Stage

pytestmark = pytest.mark.slow

SPEC = """\
name: integrity
output_dir: {out}
base_models:
  tiny: {{family: tiny}}
methods: [baseline]
benchmarks:
  - {{id: pope, synthetic: 4}}
"""


def graph_of(tmp_path):
    up = Stage("sleep", {"label": "up", "seconds": 0, "resources": {"cpus": 1},
                         "files": {"adapter.bin": "w" * 50, "notes.txt": "trained"}}, {}, label="up")
    down = Stage("sleep", {"label": "down", "seconds": 0, "resources": {"cpus": 1}}, {"up": up}, label="down")
    return up, down, StageGraph(stages={s.key: s for s in (up, down)}, cells=[])


def execute(store, graph, nodes):
    events: list[tuple[str, str, str]] = []
    sweep._drop_damaged(store, Planned(None, [], graph), lambda e, s, d: events.append((e, s.label, d)))
    summary = Executor(store, graph, ResourcesSpec(), nodes,
                       on_event=lambda e, s, d: events.append((e, s.label, d))).run()
    return summary, events


def test_a_damaged_artifact_is_named_and_computed_again(ray_local, tmp_path):
    store = Store(tmp_path / "run")
    up, _, graph = graph_of(tmp_path)
    first, _ = execute(store, graph, ray_local)
    assert sorted(first.ran) == ["down", "up"]
    folder = store.artifact_dir(up.key, up.kind)
    finished = store.stage(up.key).finished

    (folder / "adapter.bin").unlink()  # the case: a train stage's adapter deleted
    (tmp_path / "run" / "spec.yaml").write_text(SPEC.format(out=tmp_path / "run"))
    verify = CliRunner().invoke(app, ["verify", str(tmp_path / "run")])
    assert verify.exit_code == 1, verify.output
    assert f"damaged: sleep up [{up.key[:12]}] {folder}: adapter.bin is missing" in verify.output
    assert "2 artifacts checked, 1 damaged" in verify.output

    second, events = execute(store, graph, ray_local)
    damaged = [e for e in events if e[0] == "damaged"]
    assert damaged == [("damaged", "up", f"{folder}: adapter.bin is missing; computing it again")]
    assert second.ran == ["up"] and second.cached == ["down"]  # downstream kept: its own artifact is whole
    assert (folder / "adapter.bin").read_text() == "w" * 50
    assert store.stage(up.key).status == "done" and store.stage(up.key).finished > finished
    assert CliRunner().invoke(app, ["verify", str(tmp_path / "run")]).exit_code == 0


def test_a_damaged_unrecorded_artifact_is_not_adopted(ray_local, tmp_path):
    store = Store(tmp_path / "run")
    up, down, graph = graph_of(tmp_path)
    execute(store, graph, ray_local)
    folder = store.artifact_dir(up.key, up.kind)
    # A driver killed between the rename and the record leaves an unrecorded artifact; here it is also damaged.
    store.reset([up.key, down.key])
    text = (folder / "result.json").read_text()
    (folder / "result.json").write_text(text[: len(text) // 2])
    summary, events = execute(store, graph, ray_local)
    assert [e[:2] for e in events if e[0] == "damaged"] == [("damaged", "up")]
    assert "result.json is unreadable" in next(e[2] for e in events if e[0] == "damaged")
    assert summary.ran == ["up"] and summary.adopted == ["down"]
    assert json.loads((folder / "result.json").read_text())["manifest"]["files"]["notes.txt"]["size"] == 7
