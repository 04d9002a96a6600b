"""`matrix score` without the real corpus: synthetic official files, answer files in LLaVA's format,
matching by id, the three output formats, a judge on the loopback server, and user errors (exit 2)."""
import json

import pytest
from typer.testing import CliRunner

from matrix.benchmarks.base import BENCHMARKS
from matrix.cli import app
from matrix.scoring import score
from matrix.world.benchmarks import synthesize_benchmark
from tests.judge_server import JudgeServer

runner = CliRunner()


def _answers(tmp_path, bench_id, size, answer, *, name="answers.jsonl", drop=0, shuffle=True):
    bench = BENCHMARKS.get(bench_id)()
    synthesize_benchmark(bench.id, tmp_path / "eval", size, seed=2)
    samples = bench.load(tmp_path / "eval", images=False)
    rows = [{"question_id": s.record_id, "prompt": bench.official_prompt(s), "text": answer(s)} for s in samples]
    rows = rows[drop:]
    if shuffle:
        rows = rows[::-1]
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, samples


def test_pope_answers_are_matched_by_id_and_scored_by_the_sweeps_scorer(tmp_path):
    path, samples = _answers(tmp_path, "pope", 4, lambda s: "Yes")   # always yes
    result = score("pope", tmp_path / "eval", path)
    expected = BENCHMARKS.get("pope")().score(samples, ["Yes"] * len(samples)).metrics
    assert result.metrics == expected and result.questions == len(samples)
    # all "yes": recall 100, yes-ratio 100, precision = the share of "yes" labels, per split
    assert all(result.metrics[f"{s}_recall"] == 100.0 and result.metrics[f"{s}_yes_ratio"] == 100.0
               for s in ("adversarial", "popular", "random"))


def test_mme_pairs_sharing_an_id_are_told_apart_by_prompt(tmp_path):
    # MME's two questions per image share a question_id; the file is reversed, so order cannot match them
    path, samples = _answers(tmp_path, "mme", 8, lambda s: s.meta["label"])
    assert score("mme", tmp_path / "eval", path).metrics["perception"] == pytest.approx(800.0)  # 4 x 200


def test_formats(tmp_path):
    path, _ = _answers(tmp_path, "sqa", 5, lambda s: "A")
    base = ["score", "sqa", "--path", str(tmp_path / "eval"), "--answers", str(path)]
    table = runner.invoke(app, base)
    assert table.exit_code == 0 and "img_accuracy" in table.stdout
    out = json.loads(runner.invoke(app, base + ["--format", "json"]).stdout)
    assert set(out) == {"benchmark", "path", "answers", "questions", "metrics", "grading", "notes"}
    assert out["questions"] == 5 and out["grading"] == {} and out["notes"] == []
    csv = runner.invoke(app, base + ["--format", "csv"]).stdout.splitlines()
    assert csv[0] == "benchmark,metric,value"
    assert {line.split(",")[1]: float(line.split(",")[2]) for line in csv[1:]} == out["metrics"]


@pytest.mark.parametrize("args,message", [
    (["nosuch"], "unknown benchmark 'nosuch'"),
    (["pope", "--format", "xml"], "--format 'xml'"),
    (["mmvet"], "give --judge MODEL"),
])
def test_user_errors_exit_2(tmp_path, args, message):
    path, _ = _answers(tmp_path, "pope", 2, lambda s: "No")
    synthesize_benchmark("mmvet", tmp_path / "eval", 2, seed=0)
    result = runner.invoke(app, ["score", *args, "--path", str(tmp_path / "eval"), "--answers", str(path)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_missing_answers_and_bad_lines_are_named(tmp_path):
    path, _ = _answers(tmp_path, "pope", 2, lambda s: "No", drop=1)
    result = runner.invoke(app, ["score", "pope", "--path", str(tmp_path / "eval"), "--answers", str(path)])
    assert result.exit_code == 2 and "no answer for 1 of" in result.output
    path.write_text('{"question_id": 1}\n')
    result = runner.invoke(app, ["score", "pope", "--path", str(tmp_path / "eval"), "--answers", str(path)])
    assert result.exit_code == 2 and f"{path}:1: expected an object with question_id and a string text" in result.output
    result = runner.invoke(app, ["score", "pope", "--path", str(tmp_path / "nowhere"), "--answers", str(path)])
    assert result.exit_code == 2 and "no such folder" in result.output


def test_a_judged_benchmark_through_the_judge_and_its_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MATRIX_JUDGE_API_KEY", "test-key")
    monkeypatch.setenv("MATRIX_JUDGE_CACHE", str(tmp_path / "cache"))
    path, samples = _answers(tmp_path, "mmvet", 4, lambda s: "an answer", shuffle=False)
    with JudgeServer(["1.0", "0.5", "0.0", "0.5"]) as server:
        args = ["score", "mmvet", "--path", str(tmp_path / "eval"), "--answers", str(path), "--judge", "m",
                "--judge-url", server.url, "--judge-concurrency", "1", "--format", "json"]
        first = json.loads(runner.invoke(app, args).stdout)
        again = json.loads(runner.invoke(app, args).stdout)  # the same prompts: all from the cache
        assert len(server.chat_requests) == 4
    assert first["metrics"]["total"] == pytest.approx(100 * 2.0 / 4)   # (1 + 0.5 + 0 + 0.5) / 4
    assert again["metrics"] == first["metrics"] and again["grading"]["usage"]["cached_hits"] == 4
    assert first["grading"]["template"] == "ours" and first["grading"]["comparable"] is False
    assert any("not comparable with published numbers" in n for n in first["notes"])


@pytest.mark.parametrize("bench_id", ["pope", "mme", "sqa", "mmbench", "mmbench-cn", "seed", "gqa", "textvqa",
                                      "mmvet", "llava-wild", "mmhal", "shr", "chair"])
def test_every_loader_scores_without_images(tmp_path, bench_id):
    bench = BENCHMARKS.get(bench_id)()
    synthesize_benchmark(bench.id, tmp_path, 4, seed=1)
    with_images = bench.load(tmp_path)
    for image in [p for p in tmp_path.rglob("*") if p.suffix in (".png", ".jpg")]:
        image.unlink()
    before = sorted(tmp_path.rglob("*"))
    without = bench.load(tmp_path, images=False)
    assert [s.question_id for s in without] == [s.question_id for s in with_images]
    assert [s.question for s in without] == [s.question for s in with_images]
    assert sorted(tmp_path.rglob("*")) == before  # nothing decoded or written
