"""Specs a user gets wrong (or an attacker writes): each is refused at validation with exit 2 and a
`file:line: key: message` line, never a traceback, never silently accepted."""
import textwrap
import time

import pytest
from typer.testing import CliRunner

from matrix.cli import app

runner = CliRunner()

BASE = """\
name: t
base_models:
  tiny: {family: tiny}
datasets:
  d: {source: synthetic, kind: ocrvqa, size: 50}
scales: [20]
methods: [baseline, cont-sft]
benchmarks:
  - {id: pope, synthetic: 5}
tables:
  - id: main
    groups:
      - {id: g, metrics: [{id: pope, benchmark: pope}]}
"""


def validate(tmp_path, text: str):
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    result = runner.invoke(app, ["validate", str(p), "--no-check-files"])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return p, result


def refused(tmp_path, text: str) -> tuple[str, str]:
    p, result = validate(tmp_path, text)
    assert result.exit_code == 2, result.output
    return str(p), result.output


def test_the_base_spec_is_valid(tmp_path):
    _, result = validate(tmp_path, BASE)
    assert result.exit_code == 0, result.output


def test_wrong_type_in_method_overrides_names_the_override(tmp_path):
    text = BASE.replace("methods: [baseline, cont-sft]", "methods:\n  - baseline\n  - id: cont-sft\n"
                                                         "    overrides: {lr: fast, epochs: 1}")
    p, out = refused(tmp_path, text)
    assert f"{p}:10: methods[1].overrides.lr: Input should be a valid number" in out and "'fast'" in out


def test_override_that_breaks_the_batch_rule_is_named(tmp_path):
    text = BASE.replace("methods: [baseline, cont-sft]", "methods:\n  - baseline\n  - id: cont-sft\n"
                                                         "    overrides: {micro_batch_size: 7}")
    p, out = refused(tmp_path, text)
    assert f"{p}:10: methods[1].overrides: batch_size (128) must be a multiple of micro_batch_size (7)" in out


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    p, out = refused(tmp_path, BASE + "seed: 1\nseed: 2\n")
    assert f"{p}:15: seed: key given twice (first on line 14)" in out


def test_duplicate_nested_key(tmp_path):
    p, out = refused(tmp_path, BASE.replace("size: 50}", "size: 50, size: 5}"))
    assert f"{p}:5: datasets.d.size: key given twice" in out


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    text = BASE.replace("datasets:\n  d: {source: synthetic, kind: ocrvqa, size: 50}",
                        "datasets:\n  d: &d {source: synthetic, kind: ocrvqa, size: 50}\n  e: {<<: *d, size: 40}")
    _, result = validate(tmp_path, text)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("scale", ["0", "-5", "0k", "'-1k'"])
def test_zero_or_negative_scales_are_refused(tmp_path, scale):
    p, out = refused(tmp_path, BASE.replace("scales: [20]", f"scales: [{scale}]"))
    assert f"{p}:6: scales" in out and "expected a size" in out


@pytest.mark.parametrize("line, old, new", [
    (9, "synthetic: 5", "synthetic: 1.0e+30"),
    (9, "synthetic: 5", "synthetic: 1000000000000000000000000000000"),
    (9, "synthetic: 5", "synthetic: 1e30"),
    (5, "size: 50", "size: 99999999999"),
    (6, "scales: [20]", "scales: [1000000000k]"),
])
def test_absurd_sizes_are_refused(tmp_path, line, old, new):
    p, out = refused(tmp_path, BASE.replace(old, new))
    assert f"{p}:{line}: " in out
    assert "less than or equal to 10000000" in out or "10,000,000" in out or "integer" in out


def test_unknown_axis_in_table_where(tmp_path):
    p, out = refused(tmp_path, BASE.replace("  - id: main\n", "  - id: main\n    where: {colour: red}\n"))
    assert f"{p}:12: tables[0].where.colour: unknown axis 'colour'; axes are base_model" in out


def test_bad_scale_in_table_where(tmp_path):
    p, out = refused(tmp_path, BASE.replace("  - id: main\n", "  - id: main\n    where: {scale: lots}\n"))
    assert f"{p}:12: tables[0].where.scale: expected a size" in out


@pytest.mark.parametrize("line, old, new, key", [
    (14, "", "seed: true\n", "seed"),
    (14, "", "training: {lr: true}\n", "training.lr"),
    (14, "", "training: {deepspeed: {stage: true}}\n", "training.deepspeed.stage"),
    (14, "", "seeds: [1, false]\n", "seeds"),
    (9, "synthetic: 5", "synthetic: true", "benchmarks[0].synthetic"),
    (6, "scales: [20]", "scales: [true]", "scales"),
])
def test_boolean_where_a_number_is_expected(tmp_path, line, old, new, key):
    text = BASE.replace(old, new) if old else BASE + new
    p, out = refused(tmp_path, text)
    assert f"{p}:{line}: {key}:" in out
    assert "boolean" in out or "expected a size" in out


def test_a_benchmark_the_world_cannot_write_is_refused_as_synthetic(tmp_path):
    entry = "{id: pope, benchmark: indomain, synthetic: 5}"
    p, out = refused(tmp_path, BASE.replace("{id: pope, synthetic: 5}", entry))
    assert (f"{p}:9: benchmarks[0].synthetic: the synthetic world cannot write benchmark 'indomain' "
            "(it writes chair, gqa, llava-wild, ") in out
    assert "give 'path' (its official files), or 'dataset' for an in-domain benchmark" in out


def test_boolean_in_method_overrides(tmp_path):
    text = BASE.replace("methods: [baseline, cont-sft]", "methods:\n  - baseline\n  - id: cont-sft\n"
                                                         "    overrides: {epochs: true}")
    p, out = refused(tmp_path, text)
    assert f"{p}:10: methods[1].overrides.epochs: expected a number, got a boolean" in out


@pytest.mark.parametrize("name", ["'../escape'", "a/b", '"bad\\0name"', '"bell\\x07"', "'..'", "'.hidden'",
                                  "'two words'", '"line\\nbreak"'])
def test_names_that_would_move_the_run_directory(tmp_path, name):
    p, out = refused(tmp_path, BASE.replace("name: t", f"name: {name}"))
    assert f"{p}:1: name: expected a plain name" in out


def test_empty_file_is_named(tmp_path):
    p, out = refused(tmp_path, "")
    assert f"{p}:1: empty file" in out
    p, out = refused(tmp_path, "# only a comment\n")
    assert f"{p}:1: empty file" in out


def test_missing_top_level_key_names_the_file(tmp_path):
    p, out = refused(tmp_path, "name: t\n")
    assert f"{p}:1: base_models: Field required" in out


def test_nul_byte_in_the_file(tmp_path):
    p, out = refused(tmp_path, BASE + "seed: 1\x00\n")
    assert f"{p}:14: invalid YAML" in out


def bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly(tmp_path):
    # 10 levels of 10 aliases each: 10^10 values once expanded; PyYAML builds it as shared lists in no time,
    # but walking, validating or hashing it would not end.
    start = time.monotonic()
    p, out = refused(tmp_path, BASE + "extra:\n" + textwrap.indent(bomb(10), "  "))
    assert f"{p}:" in out and "alias bomb" in out
    assert "extra.a4" in out  # the first key whose expansion alone passes the bound (111,111 nodes > 10^5)
    assert time.monotonic() - start < 10  # refused by counting, not by expanding (which takes hours)


def test_alias_bomb_in_an_extended_file(tmp_path):
    (tmp_path / "parent.yaml").write_text(BASE + "x:\n" + textwrap.indent(bomb(9), "  "))
    p, out = refused(tmp_path, "extends: parent.yaml\nseed: 3\n")
    assert "parent.yaml:" in out and "alias bomb" in out


def test_recursive_alias_is_refused(tmp_path):
    p, out = refused(tmp_path, BASE + "loop: &l [1, *l]\n")
    assert f"{p}:14: invalid YAML: an alias refers to a node that contains it" in out


def test_modest_aliases_are_fine(tmp_path):
    text = BASE.replace("datasets:\n  d: {source: synthetic, kind: ocrvqa, size: 50}",
                        "datasets:\n  d: &d {source: synthetic, kind: ocrvqa, size: 50}\n  e: *d")
    _, result = validate(tmp_path, text)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_benchmark_file_is_refused_at_validate_naming_it(tmp_path, content):
    from matrix.world.benchmarks import synthesize_benchmark

    eval_dir = tmp_path / "eval"
    synthesize_benchmark("pope", eval_dir, 4, seed=0)
    questions = eval_dir / "pope" / "llava_pope_test.jsonl"
    spec = BASE.replace("{id: pope, synthetic: 5}", f"{{id: pope, path: {eval_dir}}}")
    p = tmp_path / "spec.yaml"
    p.write_text(spec)
    ok = runner.invoke(app, ["validate", str(p)])
    assert ok.exit_code == 0, ok.output
    questions.write_text(content)
    result = runner.invoke(app, ["validate", str(p)])
    assert result.exit_code == 2, result.output
    assert f"{p}:9: benchmarks[0].path: {questions}: empty file; expected POPE questions" in result.output
    assert "Traceback" not in result.output
