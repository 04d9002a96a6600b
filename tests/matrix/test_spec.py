"""Spec loading: every user error names file, line, key path and what was expected."""
import textwrap

import pytest

from matrix.errors import SpecError
from matrix.settings import training_params
from matrix.spec import parse_scale
from matrix.specfile import load_spec

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
"""


def write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def problems(path, overrides=None):
    with pytest.raises(SpecError) as e:
        load_spec(path, overrides)
    return e.value.problems


def test_valid_spec_loads(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert spec.scales == [20]
    assert [m.id for m in spec.methods] == ["baseline", "cont-sft"]


def test_unknown_key_names_line_and_path(tmp_path):
    p = write(tmp_path, BASE + "training:\n  lr: 1.0e-4\n  learning_rate: 3\n")
    (prob,) = problems(p)
    assert prob.file == str(p) and prob.line == 12
    assert prob.key == "training.learning_rate"
    assert "unknown key" in prob.message


def test_wrong_type_names_line_and_value(tmp_path):
    p = write(tmp_path, BASE + "training:\n  lr: fast\n")
    (prob,) = problems(p)
    assert (prob.line, prob.key) == (11, "training.lr")
    assert "number" in prob.message and "'fast'" in prob.message


def test_unknown_method_lists_known_ones(tmp_path):
    p = write(tmp_path, BASE.replace("[baseline, cont-sft]", "\n  - baseline\n  - dpo-magic"))
    (prob,) = problems(p)
    assert (prob.line, prob.key) == (9, "methods[1]")
    assert "unknown method 'dpo-magic'" in prob.message and "gt-dpo" in prob.message


def test_missing_required_key_points_at_parent(tmp_path):
    p = write(tmp_path, BASE.replace("{source: synthetic, kind: ocrvqa, size: 50}", "{source: synthetic, kind: ocrvqa}"))
    (prob,) = problems(p)
    assert prob.line == 5 and prob.key == "datasets.d"
    assert "'kind' and 'size'" in prob.message


def test_yaml_syntax_error_has_line(tmp_path):
    p = write(tmp_path, BASE + "training: {lr: [1,\n")
    (prob,) = problems(p)
    assert prob.line is not None and "invalid YAML" in prob.message


def test_scales_accept_k_suffix():
    assert [parse_scale(v) for v in ("5k", "2.5k", 300, "10K")] == [5000, 2500, 300, 10000]
    with pytest.raises(ValueError):
        parse_scale("lots")


def test_set_override_and_its_errors(tmp_path):
    p = write(tmp_path, BASE)
    spec = load_spec(p, ["training.lr=3e-4", "scales=[10, 5k]"])
    assert spec.training.lr == 3e-4 and spec.scales == [10, 5000]
    (prob,) = problems(p, ["training.lr=slow"])
    assert prob.file == "--set training.lr=slow" and prob.key == "training.lr"


def test_extends_merges_and_child_wins(tmp_path):
    write(tmp_path, BASE + "training: {lr: 0.5, epochs: 2}\n", "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nname: child\ntraining: {lr: 0.25}\n", "child.yaml")
    spec = load_spec(child)
    assert spec.name == "child" and spec.training.lr == 0.25 and spec.training.epochs == 2


def test_training_params_precedence(tmp_path):
    text = BASE.replace("[baseline, cont-sft]", "[baseline, {id: gt-dpo, overrides: {beta: 0.5}}]")
    spec = load_spec(write(tmp_path, text + "training: {epochs: 3, kl_lambda: 0.5}\n"))
    hp = training_params(spec, "gt-dpo")
    assert hp["beta"] == 0.5  # per-method override beats the method default
    assert hp["epochs"] == 1  # an unforced spec-wide value does not beat the method's paper default...
    assert hp["kl_lambda"] == 0.5  # ...it fills in what the method leaves unset
    assert hp["lr"] == 2e-6  # unset everywhere: the method's paper default
    forced = load_spec(write(tmp_path, text + "training: {epochs: 3, force: [epochs]}\n"))
    assert training_params(forced, "gt-dpo")["epochs"] == 3  # a forced spec-wide value does
