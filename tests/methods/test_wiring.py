"""Stage-graph wiring of the methods: shared generate stages, augmented/sampled modes, model and judge deps."""
from pathlib import Path

import yaml

from matrix.grid import expand
from matrix.specfile import load_spec
from matrix.runner.graph import build

SPEC = {
    "name": "wiring",
    "base_models": {"tiny": {"family": "tiny"}},
    "datasets": {"caps": {"source": "synthetic", "kind": "ocrvqa", "size": 50}},
    "scales": [20, 40],
    "methods": ["gt-dpo", "seva", "sima", "nsft", "nsft-no-codebook", "cont-sft-kl",
                {"id": "nsft-kl", "params": {"path": "rule"}}],
    "benchmarks": [{"id": "pope", "synthetic": 10}],
    "judge": {"model": "judge-a", "base_url": "http://127.0.0.1:9/v1"},
}


def _graph(tmp_path: Path, **changes):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump({**SPEC, **changes}))
    spec = load_spec(spec_file)
    return build(spec, expand(spec))


def test_generate_stages_are_shared_across_methods_and_scales(tmp_path):
    g = _graph(tmp_path)
    # Each method's own decoding makes its own stages (SeVa: bare questions and llava_v1 -- the tiny
    # family's template is plain_v1; SIMA: 1024 new tokens); equal settings share one stage.
    gens = {(s.params["mode"], s.params["max_new_tokens"], "strip" in s.params): s
            for s in g.stages.values() if s.kind == "generate"}
    assert sorted(gens) == [("augmented", 512, True), ("greedy", 512, False), ("greedy", 512, True),
                            ("greedy", 1024, False), ("sampled", 1024, False)]
    # one greedy stage on the largest subset (40) serves gt-dpo and nsft (all three variants), at 20 and 40
    assert all(s.deps["subset"].params["n"] == 40 for s in gens.values())
    aug = gens[("augmented", 512, True)]
    assert aug.params["augmentation"] == "diffusion" and aug.params["augmentation_params"] == {"step": 800}
    assert aug.params["template"] == "llava_v1" and "template" not in gens[("greedy", 512, False)].params
    own = {"gt-dpo": ("greedy", 512, False), "nsft": ("greedy", 512, False), "nsft-no-codebook": ("greedy", 512, False),
           "nsft-kl": ("greedy", 512, False), "seva": ("greedy", 512, True), "sima": ("greedy", 1024, False)}
    for cell in g.cells:
        c = cell.train.deps["examples"]
        for name, dep in c.deps.items():
            if name == "responses.greedy":
                assert dep is gens[own[cell.cell.method]]
            elif name.startswith("responses."):
                assert dep.params["mode"] == name.split(".", 1)[1] and dep in gens.values()


def test_construct_gets_the_model_for_sima_and_the_judge_model_for_nsft(tmp_path):
    g = _graph(tmp_path)
    cons = {(c.cell.method, c.cell.scale): c.train.deps["examples"] for c in g.cells}
    assert "model" in cons[("sima", 20)].deps and "model" not in cons[("seva", 20)].deps
    assert cons[("nsft", 20)].params["judge"] == "judge-a"
    assert cons[("nsft-no-codebook", 20)].params["judge"] == "judge-a"
    assert "judge" not in cons[("nsft-kl", 20)].params  # rule path only: the judge cannot change it
    assert "judge" not in cons[("gt-dpo", 20)].params
    kl = {c.cell.method: c.train.params["hp"]["kl_lambda"] for c in g.cells}
    assert kl["nsft-kl"] == kl["cont-sft-kl"] == 0.1 and kl["nsft"] == 0.0
    other = _graph(tmp_path, judge={"model": "judge-b"})
    cons_b = {(c.cell.method, c.cell.scale): c.train.deps["examples"] for c in other.cells}
    assert cons_b[("nsft", 20)].key != cons[("nsft", 20)].key  # a judge model change re-constructs nsft...
    assert cons_b[("gt-dpo", 20)].key == cons[("gt-dpo", 20)].key  # ...and nothing that does not use it
    assert cons_b[("nsft-kl", 20)].key == cons[("nsft-kl", 20)].key
