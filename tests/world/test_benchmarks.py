"""The world's benchmark writers: one per benchmark with a synthetic twin, found by the benchmark's id, and
the data stage asks them; an id the world cannot write is an error naming it and the ids it can."""
import pytest

from matrix.benchmarks.base import BENCHMARKS
from matrix.runner.kinds.data import DataStage
from matrix.world.benchmarks import SYNTHETIC_BENCHMARKS, synthesize_benchmark

# Every benchmark but the in-domain one (a held-out slice of a spec dataset, never synthesised).
TWINS = ["chair", "gqa", "llava-wild", "mmbench", "mmbench-cn", "mmbench-cn-extract", "mmbench-extract",
         "mme", "mmhal", "mmvet", "pope", "seed", "shr", "sqa", "textvqa"]


def test_every_benchmark_but_indomain_has_a_twin():
    assert SYNTHETIC_BENCHMARKS.names() == TWINS
    assert set(BENCHMARKS.names()) - set(TWINS) == {"indomain"}


@pytest.mark.parametrize("bench_id", TWINS)
def test_each_twin_loads_as_its_benchmark(tmp_path, bench_id):
    synthesize_benchmark(bench_id, tmp_path, 3, seed=1)
    assert BENCHMARKS.get(bench_id)().load(tmp_path, images=True)  # the official reader finds every file


def test_an_id_the_world_cannot_write_is_named_with_those_it_can(tmp_path):
    with pytest.raises(ValueError) as err:
        synthesize_benchmark("indomain", tmp_path, 3, seed=0)
    assert str(err.value) == ("the synthetic world cannot write benchmark 'indomain'; it writes: "
                              + ", ".join(TWINS))
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_data_stage_writes_through_the_world(tmp_path):
    (tmp_path / "a").mkdir()
    params = {"what": "benchmark", "id": "pope", "source": "synthetic", "size": 4, "seed": 0}
    result = DataStage().execute(params, {}, tmp_path / "a", None)
    synthesize_benchmark("pope", tmp_path / "b", 4, seed=0)
    questions = BENCHMARKS.get("pope")().load(tmp_path / "b", images=False)
    assert result == {"questions": len(questions), "root": "."}
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    (tmp_path / "c").mkdir()
    with pytest.raises(ValueError, match="cannot write benchmark 'indomain'; it writes: chair, gqa"):
        DataStage().execute({**params, "id": "indomain"}, {}, tmp_path / "c", None)


def _digests(bench_id: str, root, hash_seed: str) -> str:
    """Every file's sha256 of the twin written in a fresh interpreter with this PYTHONHASHSEED."""
    import os
    import subprocess
    import sys

    code = ("import hashlib, pathlib, sys\n"
            "from matrix.world.benchmarks import synthesize_benchmark\n"
            "root = pathlib.Path(sys.argv[2])\n"
            "synthesize_benchmark(sys.argv[1], root, 12, 3)\n"
            "for p in sorted(root.rglob('*')):\n"
            "    if p.is_file(): print(p.relative_to(root), hashlib.sha256(p.read_bytes()).hexdigest())\n")
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, "-c", code, bench_id, str(root)], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout


@pytest.mark.parametrize("bench_id", ["chair", "pope"])
def test_a_twin_is_the_same_in_every_interpreter(tmp_path, bench_id):
    """Bytes depend on the seed only, not on the interpreter's string hashing (which orders sets): CHAIR's
    synonym captions once drew in set order and differed between two runs of one spec."""
    first, second = _digests(bench_id, tmp_path / "a", "1"), _digests(bench_id, tmp_path / "b", "2")
    assert first.count("\n") > 3 and first == second
