"""Grid expansion and stage sharing: equal work is one stage."""
import textwrap

from matrix import api
from matrix.grid import expand, parse_only, select
from matrix.specfile import load_spec

SPEC = """\
name: g
base_models:
  a: {family: tiny}
  b: {family: tiny, recipe: {seed: 7}}
datasets:
  d1: {source: synthetic, kind: ocrvqa, size: 100}
  d2: {source: synthetic, kind: ocrvqa, size: 120}
scales: [20, 40]
methods: [baseline, cont-sft, gt-dpo]
benchmarks:
  - {id: pope, synthetic: 5}
  - {id: mme, synthetic: 5}
"""


def spec(tmp_path, extra="", overrides=None):
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(SPEC) + extra)
    return load_spec(p, overrides)


def test_cells_and_stage_counts(tmp_path):
    s = spec(tmp_path)
    cells = expand(s)
    # per base model: 1 baseline cell + 2 methods x 2 datasets x 2 scales
    assert len(cells) == 2 * (1 + 2 * 2 * 2)
    counts = api.plan(s).graph.counts()
    assert counts["model"] == 2
    assert counts["data"] == 2 + 2  # two datasets, two benchmarks
    assert counts["subset"] == 4  # 2 datasets x 2 scales, shared by both base models
    assert counts["generate"] == 2 * 2  # one greedy pass per (base model, dataset) on the largest scale
    assert counts["construct"] == 2 * 2 * 2 * 2 - 4  # cont-sft's set does not depend on the base model
    assert counts["train"] == 2 * 2 * 2 * 2
    # trained models x benchmarks + the baseline once per base model (not per dataset or scale)
    assert counts["evaluate"] == 2 * (2 * 2 * 2 + 1) * 2


def test_exclude_and_include_rules(tmp_path):
    s = spec(tmp_path, "grid:\n  exclude: [{method: gt-dpo, scale: 40}]\n")
    cells = expand(s)
    assert not [c for c in cells if c.method == "gt-dpo" and c.scale == 40]
    assert len(cells) == 2 * (1 + 2 * 2 * 2) - 2 * 2


def test_only_selection_keeps_keys(tmp_path):
    s = spec(tmp_path)
    full = api.plan(s)
    part = api.plan(s, "method=gt-dpo,scale=20,base_model=a")
    assert len(part.cells) == 2
    assert set(part.graph.stages) <= set(full.graph.stages)  # same keys: a partial run fills the full sweep
    assert parse_only("method=a|b") == {"method": ["a", "b"]}
    assert select(expand(s), {"dataset": ["d1"]})  # baselines stay: they belong to every dataset


def test_changed_hyperparameter_reruns_only_downstream(tmp_path):
    before = api.plan(spec(tmp_path)).graph
    # forced: an unforced spec-wide lr would not change methods that set their own (both do)
    after = api.plan(spec(tmp_path, overrides=["training.lr=0.5", "training.force=true"])).graph
    kinds_changed = {s.kind for k, s in after.stages.items() if k not in before.stages}
    assert kinds_changed == {"train", "evaluate"}
    assert before.counts()["evaluate"] == after.counts()["evaluate"]


def test_sharded_benchmark_adds_answer_stages_and_one_scoring_stage(tmp_path):
    s = spec(tmp_path, "", ["benchmarks=[{id: pope, synthetic: 10, shards: 3}]"])
    planned = api.plan(s)
    evals = [st for st in planned.graph.stages.values() if st.kind == "evaluate"]
    cells = len(planned.graph.cells)
    assert len(evals) == cells * 4  # 3 answer shards + the scoring stage per cell
    for cs in planned.graph.cells:
        scoring = cs.evaluate["pope"]
        assert scoring.params["shards"] == 3 and sorted(scoring.deps) == ["bench", "shard0", "shard1", "shard2"]
        assert [scoring.deps[f"shard{i}"].params["shard"] for i in range(3)] == [[0, 3], [1, 3], [2, 3]]
