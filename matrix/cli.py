"""`matrix`: the command line, a thin layer over `matrix.api` (the only module of the project it imports
besides the errors). User errors exit 2 without a traceback."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from matrix.errors import RunError, UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Declarative experiment-matrix runner for vision-language-model alignment research.",
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SpecArg = typer.Argument(..., help="the spec YAML file", exists=False)
SetOpt = typer.Option(None, "--set", help="override a spec value, e.g. --set training.lr=1e-6 (repeatable)")
OnlyOpt = typer.Option(None, "--only", help="select part of the grid, e.g. method=nsft,dataset=ocrvqa (a|b for several)")


def user_errors(fn):
    """Print user errors as `file:line: key: message` lines and exit 2; everything else is a bug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            for line in str(e).splitlines():
                err.print(f"error: {line}", markup=False, highlight=False)
            raise typer.Exit(2) from None
        except RunError as e:
            for line in str(e).splitlines():
                err.print(f"error: {line}", markup=False, highlight=False)
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@user_errors
def validate(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt,
             no_check_files: bool = typer.Option(False, "--no-check-files", help="skip checking local paths exist")):
    """Check a spec: schema, known methods/benchmarks/model families, and that local files exist."""
    from matrix import api

    loaded = api.load(spec, set_)
    if not no_check_files:
        api.check_files(loaded, spec)
    planned = api.plan(loaded)
    out.print(f"{spec}: ok ({len(planned.cells)} cells, {len(planned.graph.stages)} stages)")


@app.command()
@user_errors
def plan(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt, only: Optional[str] = OnlyOpt,
         no_check_files: bool = typer.Option(False, "--no-check-files", help="skip checking local paths exist"),
         stages: bool = typer.Option(False, "--stages", help="list every stage, not only the counts"),
         settings: bool = typer.Option(False, "--settings",
                                       help="instead of the stage counts: every effective training and generation "
                                            "setting of each method row and where it comes from (library default, "
                                            "method paper default, spec, spec (forced), row override)"),
         format_: str = typer.Option("text", "--format", help="text | json (json: with --settings)")):
    """Show the grid and its stage graph: per stage kind, how many are cached, to run, or failed (--settings: the settings each method row trains and generates with)."""
    import json

    from matrix import api

    if format_ not in ("text", "json"):
        raise UserError(f"--format: expected text or json, got {format_!r}")
    if format_ == "json" and not settings:
        raise UserError("--format json applies to --settings")
    loaded = api.load(spec, set_)
    if not no_check_files:
        api.check_files(loaded, spec)
    if settings:
        api.plan(loaded, only)  # the graph must build: its errors are the plan's
        rows = api.settings(loaded)
        if format_ == "json":
            out.print(json.dumps(rows, indent=1), markup=False, highlight=False, soft_wrap=True)
            return
        for row in rows:
            from rich.table import Column

            table = Table("kind", Column("setting", overflow="fold"), Column("value", overflow="fold"), "source",
                          title=f"{row['method']} ({row['plugin']}, objective {row['objective']})")
            for kind in ("training", "generation"):
                for key, item in row.get(kind, {}).items():
                    if key == "modes":
                        table.add_row(kind, key, ", ".join(item), "method")
                    else:
                        table.add_row(kind, key, json.dumps(item["value"]), item["source"])
            out.print(table)
        return
    planned, rows = api.planned_rows(loaded, only)
    out.print(f"{loaded.name}: {len(planned.cells)} cells -> {len(rows)} stages (run dir {loaded.run_dir})")
    summary = Table("kind", "stages", "cached", "to run", "failed", title="stages by kind")
    for counts in api.by_kind(rows):
        summary.add_row(*map(str, counts))
    out.print(summary)
    if stages:
        detail = Table("kind", "stage", "key", "status", "why")
        for r in rows:
            detail.add_row(r["kind"], r["label"], r["key"], r["status"], r["why"])
        out.print(detail)


@app.command()
@user_errors
def run(spec: Path = SpecArg, set_: Optional[list[str]] = SetOpt, only: Optional[str] = OnlyOpt,
        fail_fast: bool = typer.Option(False, "--fail-fast", help="stop scheduling new stages after a failure"),
        rerun: Optional[list[str]] = typer.Option(None, "--rerun", help="force re-execution: 'failed' or a stage kind"),
        address: Optional[str] = typer.Option(None, "--address", help="join this Ray cluster instead of embedded Ray"),
        tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri",
                                                   help="log the sweep to this MLflow tracking URI (default with a "
                                                        "spec `tracking:` section: sqlite:///RUN_DIR/mlflow.db)")):
    """Run every stage not already done. Safe to kill at any moment and run again: finished stages are kept (Ctrl-C, SIGTERM and SIGHUP stop it cleanly: exit 130, 143, 129; twice stops at once). A stage whose worker dies is retried (resources.KIND.max_retries); one that raises, or runs past its time limit (resources.KIND.timeout), is recorded failed and the rest go on. With tracking on, stages are logged to MLflow as they finish (a tracker that is down is a warning)."""
    from matrix import api

    loaded = api.load(spec, set_)
    progress = api.progress_display()
    tracker = api.tracker(loaded, tracking_uri, warn=lambda m: err.print(f"warning: {m}", markup=False, highlight=False))

    def on_start(planned, store):
        progress.start(planned, store)
        if tracker:
            tracker.start(planned, store)

    def on_event(event, stage, detail):
        progress.event(event, stage, detail)
        if tracker:
            tracker.event(event, stage, detail)

    try:
        summary = api.run(loaded, only=only, fail_fast=fail_fast, rerun=rerun, address=address,
                          on_event=on_event, on_start=on_start, on_note=progress.note)
    finally:
        progress.stop()
    if tracker:
        tracker.finish(summary, only)
    if not summary.ran and not summary.failed and not summary.adopted and not summary.interrupted and not summary.blocked:
        out.print(f"nothing to do: all {len(summary.cached)} stages are done ({loaded.run_dir})")
        return
    out.print(f"ran {len(summary.ran)}, cached {len(summary.cached)}, recovered {len(summary.adopted)}, "
              f"failed {len(summary.failed)}, blocked {len(summary.blocked)}"
              + (f", retried {len(summary.retried)} after worker failures" if summary.retried else ""))
    if summary.store_error:
        err.print(f"error: {summary.store_error}", markup=False, highlight=False)
        raise typer.Exit(1)
    if summary.interrupted:
        import signal

        name = signal.Signals(summary.signal or signal.SIGINT).name
        err.print(f"interrupted ({name}): finished stages are stored; `matrix run` continues from here")
        code = 128 + int(summary.signal or signal.SIGINT)
        if summary.ray_start_cut:
            # The signal cut Ray's start-up short: everything is stored and said, but the interpreter's
            # final clean-up of Ray's half-made native state crashed the process (SIGSEGV, 4 runs in 14
            # with SIGTERM 4-6 s after Ray's GCS started). End here, without that clean-up.
            import os
            import sys

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise typer.Exit(code)
    if summary.failed or summary.blocked:
        for label, line in summary.failed:
            err.print(f"failed: {label}: {line}", markup=False, highlight=False)
        if summary.blocked:
            err.print(f"{len(summary.blocked)} stages not run because a stage they need failed")
        err.print(f"details: matrix status {loaded.run_dir}")
        raise typer.Exit(1)


@app.command()
@user_errors
def status(run_: Optional[Path] = typer.Argument(None, metavar="RUN", help="run directory or spec (default: newest run)"),
           runtime: bool = typer.Option(False, "--runtime", help="also list how each model-loading stage ran: "
                                                                "device, dtype, batch size, wall time")):
    """Per-stage progress of a run; failures with the first line of their error; each running stage with how long it has run and the last line its log wrote."""
    from matrix import api

    st = api.status(run_)
    rows = st.rows
    table = Table("kind", "stages", "done", "to run", "failed", title=f"{st.spec.name} ({st.spec.run_dir})")
    for counts in st.by_kind():
        table.add_row(*map(str, counts))
    out.print(table)
    if runtime:
        ran = Table("kind", "stage", "device", "dtype", "batch", "wall s", title="how the model-loading stages ran")
        for r in rows:
            if r["runtime"]:
                rt = r["runtime"]
                ran.add_row(r["kind"], r["label"], str(rt.get("device")), str(rt.get("dtype")),
                            "-" if rt.get("batch_size") is None else str(rt["batch_size"]), f"{r['wall_s']:.1f}")
        out.print(ran)
    for r in rows:
        if r["status"] == "failed":
            out.print(f"failed: {r['label']} [{r['key']}]: {r['why']}", markup=False, highlight=False)
    for line in st.running:
        out.print(line, markup=False, highlight=False)


@app.command()
@user_errors
def report(run_: Optional[Path] = typer.Argument(None, metavar="RUN", help="run directory or spec (default: newest run)"),
           format_: str = typer.Option("markdown", "--format", help="latex | markdown | csv | json"),
           table: Optional[str] = typer.Option(None, "--table", help="which table of the spec (default: the first)"),
           cost: bool = typer.Option(False, "--cost", help="add train wall time, GPU-hours and peak memory per row"),
           significance: bool = typer.Option(False, "--significance",
                                             help="mark deltas vs. baseline a paired t-test over seeds supports"),
           details: Optional[str] = typer.Option(None, "--details", metavar="BENCH",
                                                 help="instead of the table: every cell's per-sample answers and "
                                                      "scores on BENCH (csv or json; default csv)")):
    """Render a table declared in the spec from the run's stored metrics (--details BENCH: the per-sample answers and scores behind a benchmark's numbers)."""
    from matrix import api

    if details is not None:
        frame = api.details(run_, details)
        for line in frame.attrs.get("damaged", []):
            err.print(f"warning: damaged artifact left out (`matrix run` computes it again): {line}",
                      markup=False, highlight=False)
        if format_ == "json":
            sys.stdout.write(frame.to_json(orient="records", force_ascii=False, indent=1))
        else:
            sys.stdout.write(frame.to_csv(index=False))
        return
    sys.stdout.write(api.report(run_, format_, table, cost=cost, significance=significance))
    sys.stdout.write("\n")


@app.command()
@user_errors
def score(benchmark: str = typer.Argument(..., help="benchmark id: pope, mme, sqa, mmbench, mmvet, llava-wild, ..."),
          path: Path = typer.Option(..., "--path", help="the eval folder in LLaVA's playground/data/eval layout"),
          answers: Path = typer.Option(..., "--answers", help="LLaVA's model_vqa* answer file or a run's answers.jsonl"),
          judge: Optional[str] = typer.Option(None, "--judge", help="judged benchmarks: the judge model name"),
          judge_url: Optional[str] = typer.Option(None, "--judge-url", help="the judge's OpenAI-compatible base URL"),
          judge_concurrency: int = typer.Option(4, "--judge-concurrency", help="judge requests in flight at once"),
          template: Optional[Path] = typer.Option(None, "--template",
                                                  help="the official grading template file, sent verbatim"),
          replies: Optional[Path] = typer.Option(None, "--replies",
                                                 help="stored judge replies instead of a judge (MM-Vet's "
                                                      "*-grade-Nruns.json, LLaVA-Bench's review .jsonl)"),
          limit: Optional[int] = typer.Option(None, "--limit", help="only the first N questions of each split"),
          format_: str = typer.Option("table", "--format", help="table | json | csv")):
    """Score an existing answer file against a benchmark's official files (no images needed): every metric, per split/subtask."""
    from matrix import api

    if format_ not in ("table", "json", "csv"):
        raise UserError(f"--format {format_!r}: expected table, json or csv")
    judge_settings = None
    if judge is not None:
        judge_settings = {"model": judge, "base_url": judge_url, "max_concurrency": judge_concurrency}
    result = api.score(benchmark, path, answers, judge=judge_settings, template=template, replies=replies,
                       limit=limit)
    sys.stdout.write(api.render_score(result, format_))


@app.command()
@user_errors
def verify(run_: Optional[Path] = typer.Argument(None, metavar="RUN", help="run directory or spec (default: newest run)")):
    """Check every finished stage's artifact against the manifest it recorded (files, sizes, hashes of files up to 16 MiB); list the damaged ones and exit 1 if there are any (`matrix run` computes them again)."""
    from matrix import api

    checked, damaged, unlisted = api.verify(run_)
    for rec, folder, found in damaged:
        out.print(f"damaged: {rec.kind} {rec.label} [{rec.key[:12]}] {folder}: {'; '.join(found)}",
                  markup=False, highlight=False)
    out.print(f"{checked} artifacts checked, {len(damaged)} damaged"
              + (f", {unlisted} without a manifest (written before manifests; only result.json checked)"
                 if unlisted else ""), markup=False, highlight=False)
    if damaged:
        err.print("`matrix run` computes the damaged stages again (and nothing else)")
        raise typer.Exit(1)


@app.command()
@user_errors
def repair(run_: Path = typer.Argument(..., metavar="RUN", help="run directory or spec"),
           force: bool = typer.Option(False, "--force", help="rebuild even when the store reads fine")):
    """Rebuild a damaged run store (matrix.db) from the finished artifacts' result.json files, recomputing nothing. The damaged file is kept beside it as matrix.db.damaged-<time>; imported numbers and the run history are salvaged from it as far as it reads."""
    from matrix import api

    run_dir, done = api.repair(run_, force)
    if done is None:
        out.print(f"{run_dir / 'matrix.db'} reads fine: nothing to repair (--force rebuilds it anyway)",
                  markup=False, highlight=False)
        return
    if done.kept_as:
        out.print(f"kept the damaged store as {done.kept_as}", markup=False, highlight=False)
    salvaged = ", ".join(f"{n} {what}" if n is not None else f"no {what} (unreadable)"
                         for n, what in ((done.imported, "imported numbers"), (done.runs, "runs in the history")))
    out.print(f"rebuilt {run_dir / 'matrix.db'}: {len(done.recorded)} finished stages recorded from their "
              f"artifacts; salvaged {salvaged}; {done.missing} stages never finished", markup=False, highlight=False)
    for line in done.damaged:
        err.print(f"damaged artifact not used (`matrix run` computes it again): {line}", markup=False, highlight=False)


@app.command("import")
@user_errors
def import_(run_: Path = typer.Argument(..., metavar="RUN", help="run directory or spec (a spec's run need not have started)"),
            file: Path = typer.Argument(..., metavar="FILE.csv",
                                        help="long format: base_model,dataset,scale,method,benchmark,value[,seed,metric]")):
    """Bring external numbers (e.g. a paper's published rows) into a run's store, marked as imported. Given a spec whose run has not started, it creates the run directory first."""
    from matrix import api

    spec, n, notes = api.import_numbers(run_, file)
    out.print(f"imported {n} numbers from {file.name} into {spec.run_dir}", markup=False, highlight=False)
    for note in notes:
        err.print(f"note: {note}", markup=False, highlight=False)


@app.command()
@user_errors
def plot(run_: Optional[Path] = typer.Argument(None, metavar="RUN", help="run directory or spec (default: newest run)"),
         kind: str = typer.Option("scaling", "--kind", help="scaling (Fig. 4) | cost (Fig. 2)"),
         output: Optional[Path] = typer.Option(None, "--output", "-o", help="PNG path (a PDF is written beside it)"),
         table: Optional[str] = typer.Option(None, "--table", help="which table's column groups (default: the first)")):
    """Draw improvement over baseline against data scale, or training time and peak memory per method."""
    from matrix import api

    paths = api.plot(run_, kind, output, table)
    for p in paths:
        out.print(f"wrote {p}", markup=False, highlight=False)


@app.command()
@user_errors
def export(run_: Path = typer.Argument(..., metavar="RUN", help="run directory or spec"),
           cell: str = typer.Argument(..., metavar="CELL",
                                      help="the cell's label, e.g. gt-dpo/tiny/shapes-vqa-1000 (or its first "
                                           "parts when they name one trained cell)"),
           output: Path = typer.Argument(..., metavar="OUT", help="a new folder"),
           adapter: bool = typer.Option(False, "--adapter",
                                        help="write the PEFT LoRA adapter (plus non_lora_trainables.safetensors) "
                                             "instead of the merged model"),
           seed: Optional[int] = typer.Option(None, "--seed", help="which seed's cell, when the run has several")):
    """Write a cell's trained model as a standalone llava-hf checkpoint (LoRA merged, projector included), which LlavaForConditionalGeneration.from_pretrained loads without matrix; --adapter: the PEFT adapter instead."""
    from matrix import api

    path = api.export(run_, cell, output, adapter=adapter, seed=seed)
    out.print(f"wrote {path}", markup=False, highlight=False)


def main() -> None:  # pragma: no cover - console entry point
    app()
