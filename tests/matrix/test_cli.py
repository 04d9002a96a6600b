"""The command line: user errors exit 2 with file:line messages and no traceback."""
import textwrap

from typer.testing import CliRunner

from matrix.cli import app

runner = CliRunner()

SPEC = """\
name: c
output_dir: {out}
base_models:
  real: {{family: llava, path: {model}}}
methods: [baseline]
benchmarks:
  - {{id: pope, path: {bench}}}
"""


def write(tmp_path, **kw):
    values = {"out": tmp_path / "run", "model": tmp_path / "llava-1.5-7b-hf", "bench": tmp_path / "eval"}
    values.update(kw)
    p = tmp_path / "spec.yaml"
    p.write_text(textwrap.dedent(SPEC.format(**values)))
    return p


def test_spec_error_exits_2_without_traceback(tmp_path):
    p = write(tmp_path)
    p.write_text(p.read_text() + "trainng: {lr: 1}\n")
    result = runner.invoke(app, ["validate", str(p)])
    assert result.exit_code == 2
    assert f"{p}:8: trainng: unknown key" in result.output
    assert "Traceback" not in result.output


def test_missing_files_are_named_and_no_check_files_skips_them(tmp_path):
    p = write(tmp_path)
    result = runner.invoke(app, ["validate", str(p)])
    assert result.exit_code == 2
    assert f"{p}:4: base_models.real.path" in result.output and "config.json not found" in result.output
    assert "llava_pope_test.jsonl not found" in result.output
    ok = runner.invoke(app, ["plan", str(p), "--no-check-files"])
    assert ok.exit_code == 0, ok.output
    assert "2 stages" not in ok.output and "evaluate" in ok.output


def test_bad_only_and_bad_set_exit_2(tmp_path):
    p = write(tmp_path)
    assert runner.invoke(app, ["plan", str(p), "--no-check-files", "--only", "colour=red"]).exit_code == 2
    result = runner.invoke(app, ["plan", str(p), "--no-check-files", "--set", "seed=many"])
    assert result.exit_code == 2 and "--set seed=many" in result.output


def test_report_on_a_directory_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output


def test_ray_that_does_not_start_is_a_clear_error_and_the_run_row_says_failed(tmp_path, monkeypatch):
    """A machine too loaded for Ray's processes to come up in time (seen under load 70): exit 1 with a
    sentence, no traceback, and the run's row records the failure instead of staying `running`."""
    import sqlite3

    from matrix.runner import cluster

    def no_node(num_cpus, num_gpus):
        raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(cluster, "_start_embedded", no_node)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: t
        output_dir: {tmp_path / 'run'}
        base_models: {{tiny: {{family: tiny}}}}
        methods: [baseline]
        benchmarks: [{{id: pope, synthetic: 4}}]
        """))
    result = runner.invoke(app, ["run", str(spec)])
    assert result.exit_code == 1, result.output
    assert "embedded Ray did not start on this machine: The current node timed out" in result.output
    assert "Traceback" not in result.output
    with sqlite3.connect(tmp_path / "run" / "matrix.db") as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
