"""The generate and construct stages on the random tiny model: SeVa's augmented mode and SIMA's critic
run through the real model (its replies are unparseable, so every sample is dropped and counted)."""
import json

import pytest

from matrix.runner.kinds.construct import ConstructStage
from matrix.runner.kinds.generate import GenerateStage
from matrix.runner.stage import StageContext, StageInput


def _inputs(world, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data.json").write_text(json.dumps(world.records))
    (tmp_path / "subset").mkdir()
    (tmp_path / "subset" / "ids.json").write_text(json.dumps([r["id"] for r in world.records[:4]]))
    return {
        "model": StageInput(world.base.parent, {"model_dir": world.base.name, "template": "plain_v1"}),
        "data": StageInput(tmp_path / "data", {"data_file": "data.json", "image_root": str(world.image_root)}),
        "subset": StageInput(tmp_path / "subset", {"n": 4}),
    }


def _ctx(tmp_path):
    return StageContext(tmp_path, 1, 0, "k", "test")


def test_augmented_generation_differs_from_greedy_under_heavy_noise(tiny_world, tmp_path):
    inputs = _inputs(tiny_world, tmp_path)
    outs = {}
    for mode, extra in (("greedy", {}), ("augmented", {"augmentation": "diffusion", "augmentation_params": {"step": 999}, "seed": 0})):
        out = tmp_path / mode
        out.mkdir()
        result = GenerateStage().execute({"mode": mode, "max_new_tokens": 6, **extra}, inputs, out, _ctx(tmp_path))
        assert result["items"] == 8
        assert result["runtime"] == {"device": "cpu", "dtype": "float32", "batch_size": 16}  # the defaults
        outs[mode] = json.loads((out / "responses.json").read_text())
    assert set(outs["greedy"]) == set(outs["augmented"])
    # ᾱ_999 ≈ 0.08: the image is mostly noise, so some answers of a random model change
    assert any(outs["greedy"][k] != outs["augmented"][k] for k in outs["greedy"])


def test_sima_construct_asks_the_real_model_and_drops_unparseable(tiny_world, tmp_path):
    inputs = _inputs(tiny_world, tmp_path)
    for mode in ("greedy", "sampled"):
        d = tmp_path / mode
        d.mkdir()
        answers = {f"r{i}:{q}": f"{mode}{i}{q}" for i in range(4) for q in range(2)}
        (d / "responses.json").write_text(json.dumps(answers))
        inputs[f"responses.{mode}"] = StageInput(d, {})
    out = tmp_path / "construct"
    out.mkdir()
    params = {"method": "sima", "version": "1", "params": {"critic_max_new_tokens": 4, "critic_examples": False}, "seed": 0}
    with pytest.raises(ValueError, match="no training examples") as err:
        ConstructStage().execute(params, inputs, out, _ctx(tmp_path))
    # the random model never writes [[1]]/[[2]]: all 8 critic replies are dropped and counted
    assert "'judged': 8" in str(err.value) and "'dropped_unparseable': 8" in str(err.value)


def test_nsft_construct_stage_builds_the_judge_from_its_judge_settings(tiny_world, tmp_path, monkeypatch):
    from tests.judge_server import JudgeServer

    monkeypatch.setenv("MATRIX_JUDGE_CACHE", str(tmp_path / "cache"))
    reply = "Errors: none\n" + "\n".join(f"User: Q{i}?\nGPT: Yes, {i}." for i in range(5))
    records = [{"id": f"c{i}", "image": r["image"], "conversations": [
        {"from": "human", "value": "<image>\nDescribe this image in detail."},
        {"from": "gpt", "value": "A long and careful description of the picture."}]} for i, r in enumerate(tiny_world.records[:2])]
    world = type(tiny_world)(tiny_world.base, tiny_world.image_root, records)
    inputs = _inputs(world, tmp_path)
    (tmp_path / "subset" / "ids.json").write_text(json.dumps(["c0", "c1"]))
    (tmp_path / "greedy").mkdir()
    (tmp_path / "greedy" / "responses.json").write_text(json.dumps({"c0:0": "A cat.", "c1:0": "A dog."}))
    inputs["responses.greedy"] = StageInput(tmp_path / "greedy", {})
    params = {"method": "nsft", "version": "1", "params": {}, "judge": "judge-x", "seed": 0}
    with JudgeServer(lambda body: reply) as server:
        params["judge_settings"] = {"model": "judge-x", "base_url": server.url}  # outside the key
        for attempt in range(2):
            out = tmp_path / f"out{attempt}"
            out.mkdir()
            result = ConstructStage().execute(params, inputs, out, _ctx(tmp_path))
            assert result["examples"] == 2 and result["judge"]["model"] == "judge-x"
        assert len(server.requests) == 2  # the second run answered from the cache
        assert result["judge"]["calls"] == 0 and result["judge"]["cached_hits"] == 2
        with pytest.raises(ValueError, match="differs"):
            ConstructStage().execute({**params, "judge": "other"}, inputs, tmp_path / "out0", _ctx(tmp_path))
    examples = json.loads((tmp_path / "out1" / "examples.json").read_text())
    assert len(examples[0]["conversations"]) == 12


def test_sharded_evaluation_scores_exactly_like_one_stage(tiny_world, tmp_path):
    """Three shards answer contiguous slices; the evaluate stage over them scores the same answers."""
    from matrix.runner.kinds.evaluate import EvaluateStage, shard_bounds
    from matrix.world.benchmarks import synthesize_benchmark

    assert [shard_bounds(10, i, 3) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]
    synthesize_benchmark("pope", tmp_path / "bench", 4, seed=0)
    inputs = {"model": StageInput(tiny_world.base.parent, {"model_dir": tiny_world.base.name, "template": "plain_v1"}),
              "bench": StageInput(tmp_path / "bench", {"root": "."})}
    params = {"benchmark": "pope", "limit": None, "max_new_tokens": 4}
    (tmp_path / "whole").mkdir()
    whole = EvaluateStage().execute(params, inputs, tmp_path / "whole", _ctx(tmp_path))
    shards = {}
    for i in range(3):
        out = tmp_path / f"shard{i}"
        out.mkdir()
        res = EvaluateStage().execute({**params, "shard": [i, 3]}, inputs, out, _ctx(tmp_path))
        assert "metrics" not in res  # a shard answers; it does not score
        assert res["runtime"] == {"device": "cpu", "dtype": "float32", "batch_size": 16}
        shards[f"shard{i}"] = StageInput(out, res)
    assert sum(s.result["questions"] for s in shards.values()) == whole["questions"]
    (tmp_path / "merged").mkdir()
    merged = EvaluateStage().execute({**params, "shards": 3}, {"bench": inputs["bench"], **shards},
                                 tmp_path / "merged", _ctx(tmp_path))  # no model input: it loads none
    assert merged["metrics"] == whole["metrics"] and "runtime" not in merged  # it loaded no model
    read = lambda d: (d / "answers.jsonl").read_text()  # noqa: E731
    assert read(tmp_path / "merged") == read(tmp_path / "whole")


def test_the_spec_template_reaches_the_judge(tiny_world, tmp_path):
    """The scoring stage builds the benchmark with the template file: the reference judge, which reads
    only our MMHal layout, then cannot read the prompts (and says so), while ours scores."""
    from matrix.benchmarks.judge import JudgeError
    from matrix.runner.kinds.evaluate import EvaluateStage
    from matrix.world.benchmarks import synthesize_benchmark

    synthesize_benchmark("mmhal", tmp_path / "bench", 2, seed=0)
    inputs = {"model": StageInput(tiny_world.base.parent, {"model_dir": tiny_world.base.name, "template": "plain_v1"}),
              "bench": StageInput(tmp_path / "bench", {"root": "."})}
    params = {"benchmark": "mmhal", "limit": None, "max_new_tokens": 4}
    (tmp_path / "answers").mkdir()
    shard = EvaluateStage().execute({**params, "shard": [0, 1]}, inputs, tmp_path / "answers", _ctx(tmp_path))
    ctx = _ctx(tmp_path)
    scoring = {**params, "shards": 1, "judge": "reference:r", "judge_settings": {"provider": "reference", "model": "r"}}
    deps = {"bench": inputs["bench"], "shard0": StageInput(tmp_path / "answers", shard)}
    (tmp_path / "ours").mkdir()
    assert "score" in EvaluateStage().execute(scoring, deps, tmp_path / "ours", ctx)["metrics"]
    other = tmp_path / "official.txt"
    other.write_text("Contents: {}\nQ: {}\nA: {}\nR: {}\n")
    (tmp_path / "theirs").mkdir()
    with pytest.raises(JudgeError, match="cannot read"):
        EvaluateStage().execute({**scoring, "template": {"path": str(other), "sha": "x"}}, deps, tmp_path / "theirs", ctx)


def test_seva_generation_asks_bare_questions_with_its_own_template(tiny_world, tmp_path, monkeypatch):
    """`strip` and `template` (SeVa's step 1 and 2): what reaches the model's generate call."""
    from matrix.models.handle import ModelHandle

    asked = []

    def fake_generate(self, images, questions, **kw):
        asked.append((self.template.name, list(questions)))
        return ["x"] * len(questions)

    monkeypatch.setattr(ModelHandle, "generate", fake_generate)
    inputs = _inputs(tiny_world, tmp_path)
    for name, extra in (("plain", {}), ("seva", {"strip": ["Answer the question using a single word or phrase."],
                                                 "template": "llava_v1"})):
        out = tmp_path / name
        out.mkdir()
        GenerateStage().execute({"mode": "greedy", "max_new_tokens": 4, **extra}, inputs, out, _ctx(tmp_path))
    (plain_template, plain), (seva_template, bare) = asked
    assert (plain_template, seva_template) == ("plain_v1", "llava_v1")
    assert sum("single word or phrase" in q for q in plain) == 4  # each record's first question has it
    assert bare == [q.replace("\nAnswer the question using a single word or phrase.", "") for q in plain]
