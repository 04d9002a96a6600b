"""Artifact manifests: a finished stage's folder is described in its result.json, and any later change
to it — a file deleted, truncated, or rewritten with the same size — is reported, never read."""
import json

import pytest

from matrix import manifest
from matrix.runner.executor import execute_stage


def finished(tmp_path, files: dict[str, bytes]):
    """An artifact folder as a stage leaves it: its files, then result.json with their manifest."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "stage.log").write_text("log\n")
    payload = {"result": {"x": 1}, "manifest": manifest.build(folder)}
    (folder / "result.json").write_text(json.dumps(payload))
    return folder


def test_manifest_lists_files_sizes_and_hashes(tmp_path):
    folder = finished(tmp_path, {"a.txt": b"abc", "sub/b.bin": b""})
    m = json.loads((folder / "result.json").read_text())["manifest"]
    # sha256 of b"abc" and of b"" (FIPS 180-2 test vectors)
    assert m["files"] == {
        "a.txt": {"size": 3, "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        "sub/b.bin": {"size": 0, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    }
    assert manifest.problems(folder) == []


def test_deleted_truncated_and_changed_files_are_named(tmp_path):
    folder = finished(tmp_path, {"adapter.safetensors": b"w" * 100, "scores.jsonl": b'{"a": 1}\n{"a": 2}\n',
                                 "answers.jsonl": b"yes\n"})
    (folder / "adapter.safetensors").unlink()
    (folder / "scores.jsonl").write_bytes(b'{"a": 1}\n{"a"')
    (folder / "answers.jsonl").write_bytes(b"no!\n")  # same size, other content
    assert sorted(manifest.problems(folder)) == [
        "adapter.safetensors is missing",
        "answers.jsonl has changed since it was written (sha256 differs)",
        "scores.jsonl has 13 bytes, 18 when written",
    ]


def test_files_over_the_hash_limit_are_checked_by_size(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "HASH_LIMIT", 10)
    folder = finished(tmp_path, {"big.bin": b"x" * 11, "small.txt": b"y"})
    m = json.loads((folder / "result.json").read_text())["manifest"]["files"]
    assert m["big.bin"] == {"size": 11, "sha256": None} and m["small.txt"]["sha256"]
    (folder / "big.bin").write_bytes(b"z" * 11)  # same size: not seen, by design (documented)
    assert manifest.problems(folder) == []
    (folder / "big.bin").write_bytes(b"z" * 5)
    assert manifest.problems(folder) == ["big.bin has 5 bytes, 11 when written"]


@pytest.mark.parametrize("content, expected", [
    (None, "result.json is missing"),
    ('{"result": {"x": 1}, "manif', "result.json is unreadable"),
    ("[1, 2]", "result.json does not hold a stage result"),
])
def test_a_missing_or_broken_result_file_is_damage(tmp_path, content, expected):
    folder = finished(tmp_path, {"a": b"1"})
    if content is None:
        (folder / "result.json").unlink()
    else:
        (folder / "result.json").write_text(content)
    (found,) = manifest.problems(folder)
    assert found.startswith(expected)


def test_an_artifact_from_before_manifests_is_only_checked_for_its_result(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "result.json").write_text('{"result": {}}')
    assert manifest.problems(folder) == [] and not manifest.has_manifest(folder)
    assert manifest.problems(tmp_path / "nowhere") == ["the artifact folder is missing"]


def test_execute_stage_records_the_manifest_of_what_it_wrote(tmp_path):
    from matrix.runner.stage import KINDS, StageKind, StageParams

    @KINDS.register("manifest-test-writer")
    class Writer(StageKind):
        class Params(StageParams):
            n: int

        def run(self, params, inputs, out, ctx):
            (out / "weights.bin").write_bytes(b"\x00" * params.n)
            return {"n": params.n}

    try:
        final = tmp_path / "artifacts" / "manifest-test-writer" / "k"
        payload = execute_stage("manifest-test-writer", "k" * 16, "writer", {"n": 7}, {}, str(final),
                                str(tmp_path / "tmp"), str(tmp_path), 1, 0)
    finally:
        KINDS._items.pop("manifest-test-writer", None)
    assert payload["manifest"]["files"] == {"weights.bin": {
        "size": 7, "sha256": "837885c8f8091aeaeb9ec3c3f85a6ff470a415e610b8ba3e49f9b33c9cf9d619"}}  # sha256sum
    assert json.loads((final / "result.json").read_text())["manifest"] == payload["manifest"]
    assert manifest.problems(final) == []
