"""Experiment tracking: a sweep logged to MLflow by the driver, as its stages are recorded.

One MLflow run per sweep (a run directory) with a nested run per cell of the grid:
- params: the cell's axes and effective settings (training hyper-parameters after the method's paper
  defaults and the spec's overrides, method params, generation, base model, benchmark settings);
- metrics: every metric of every benchmark as `<benchmark id>/<metric>`; the train stage's per-step
  history as `train/loss`, `train/lr`, `train/margin`, ... (step = optimizer step) and its summary
  numbers as `train_result/<name>`; per stage its wall time and peak memory
  (`stage/train/wall_s`, `stage/<benchmark id>/peak_mem_mb`, ...);
- on the sweep's run: the spec snapshot and the rendered tables and plots, as artifacts.

Fed by what the driver already has: `start(planned, store)` is `api.run`'s `on_start`, `event(...)` its
`on_event` (a stage is logged once it is recorded done), and `finish(summary)` runs after `api.run`
returns (also when everything was cached: it logs what an earlier run could not).

Idempotent: the runs carry tags naming the sweep (an id kept in `<run dir>/tracking.json`) and the cell,
and are looked up before one is created; a stage's metrics go out once per cell run, with a tag naming
the stage's key in the same batch. A resumed or repeated `matrix run` adds nothing already there.

A tracker that cannot be reached (or that refuses a write) is a warning: logging stops for the rest of
this `matrix run`, the sweep and its store go on untouched, and the next run logs what is missing.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from matrix.settings import training_params
from matrix.spec import Spec, TrackingSpec

log = logging.getLogger(__name__)

SWEEP_FILE = "tracking.json"  # in the run directory: the sweep's identity in the tracker
DEFAULT_DB = "mlflow.db"
TAG_SWEEP, TAG_ROLE, TAG_CELL = "matrix_sweep", "matrix_role", "matrix_cell"
TAG_STAGE = "matrix_stage_"  # + the first 16 hex digits of a stage key: its metrics were logged
MAX_METRICS, MAX_PARAMS = 1000, 100  # MLflow's limits per log_batch call
PARAM_LEN = 6000


def default_uri(run_dir: Path) -> str:
    return f"sqlite:///{(Path(run_dir) / DEFAULT_DB).resolve()}"


def tracking_uri(spec: Spec, override: str | None = None) -> str | None:
    """The URI to log to: `--tracking-uri`, else the spec's `tracking.uri`, else the run directory's SQLite
    file when the spec has a `tracking:` section; None: no tracking."""
    if override:
        return override
    if spec.tracking is None:
        return None
    return spec.tracking.uri or default_uri(spec.run_dir)


def flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    """Nested settings as MLflow params: `training.lora.r` -> '8'."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None:
        text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
        out[prefix] = text[:PARAM_LEN]
    return out


def cell_identity(cell, train) -> str:
    """A cell's run in the tracker: its axes and what it trains (a changed training is another run)."""
    return f"{cell.label}#seed{cell.seed}@{train.short if train is not None else 'untrained'}"


def cell_params(spec: Spec, cell) -> dict[str, str]:
    from matrix.methods.base import METHODS

    entry = spec.method(cell.method)
    out: dict[str, str] = {}
    for axis in ("base_model", "dataset", "scale", "method", "seed"):
        if cell.axis(axis) is not None:
            out[axis] = str(cell.axis(axis))
    flatten("base_model_settings", spec.base_models[cell.base_model].model_dump(mode="json", exclude={"recipe"}), out)
    flatten("method_settings", {"plugin": entry.plugin, "params": entry.params}, out)
    if METHODS.get(entry.plugin).objective != "none":
        flatten("training", training_params(spec, cell.method), out)
        flatten("generation", spec.generation.model_dump(mode="json"), out)
    for b in spec.benchmarks:
        if b.applies_to(cell.dataset):
            settings = b.model_dump(mode="json", include={"path", "synthetic", "limit", "max_new_tokens", "shards"})
            flatten(f"benchmark.{b.id}", {"plugin": b.plugin, **settings}, out)
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


class Tracker:
    """Logs one sweep to MLflow. Every public method is safe: a tracker error becomes one warning."""

    def __init__(self, spec: Spec, uri: str | None = None, warn: Callable[[str], None] | None = None):
        self.spec = spec
        self.settings = spec.tracking or TrackingSpec()
        self.uri = uri or tracking_uri(spec) or default_uri(spec.run_dir)
        self.warn = warn or log.warning
        self.down = False
        self.client = None
        self.store = None
        self.graph = None
        self.parent_id: str | None = None
        self.runs: dict[str, str] = {}  # cell identity -> MLflow run id
        self.logged: dict[str, set[str]] = {}  # MLflow run id -> stage keys (16 hex digits) logged
        self.by_stage: dict[str, list[tuple[str, str, Any]]] = {}  # stage key -> (identity, role, stage)
        self.cell_stages: dict[str, list[str]] = {}  # identity -> keys of its train and evaluate stages

    # ---- the driver's hooks -------------------------------------------------------------------
    def start(self, planned, store) -> None:
        """`api.run`'s on_start: find or create the sweep's and the cells' runs, log what is done already."""
        self.store = store
        self._guard("connecting", self._open, planned)
        self._guard("logging finished stages", self._sync)

    def event(self, event: str, stage, detail: str) -> None:
        """`api.run`'s on_event: a stage recorded done is logged to its cells' runs."""
        if event in ("done", "adopted") and stage.key in self.by_stage:
            self._guard(f"logging {stage.label}", self._log_stage, stage.key)

    def finish(self, summary=None, only: str | None = None) -> None:
        """After `api.run`: log what is still missing, the tables and plots, and the runs' final status."""
        from matrix.store import Store
        from matrix.runner.plan import plan

        if self.down or not (self.spec.run_dir / "matrix.db").exists():
            return
        store = Store(self.spec.run_dir)
        try:
            self.store = store
            if self.parent_id is None:  # everything was cached: api.run returned before on_start
                self._guard("connecting", self._open, plan(self.spec, only))
            self._guard("logging finished stages", self._sync)
            if self.settings.artifacts:
                self._guard("logging tables and plots", self._artifacts)
            self._guard("closing the runs", self._close, summary)
        finally:
            self.store = None
            store.close()

    # ---- internals ----------------------------------------------------------------------------
    def _guard(self, what: str, fn: Callable, *args) -> Any:
        if self.down:
            return None
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - any tracker failure: warn once, never lose the sweep
            self.down = True
            first = (str(e).strip().splitlines() or [""])[0][:300]
            self.warn(f"tracking: {what} failed at {self.uri} ({type(e).__name__}: {first}); the sweep goes on "
                      f"without tracking, and the next `matrix run` logs what is missing")
            return None

    def _sweep_id(self) -> str:
        path = self.spec.run_dir / SWEEP_FILE
        if path.exists():
            return json.loads(path.read_text())["sweep"]
        sweep = uuid.uuid4().hex
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sweep": sweep}))
        os.replace(tmp, path)
        return sweep

    def _connect(self):
        # A server that is down should cost seconds, not MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # matrix's stdout is its own
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise RuntimeError("the mlflow package is not installed (pip install 'matrix-runner[tracking]', "
                               "or mlflow)") from None
        return MlflowClient(tracking_uri=self.uri)

    def _experiment(self) -> str:
        name = self.settings.experiment or self.spec.name
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = None
            if self.uri.startswith("sqlite:///"):  # artifacts beside the database file (MLflow: ./mlruns)
                location = (Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
            return self.client.create_experiment(name, artifact_location=location)
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def _open(self, planned) -> None:
        from mlflow.entities import ViewType

        self.graph = planned.graph
        self.client = self._connect()
        exp_id = self._experiment()
        sweep = self._sweep_id()
        found: dict[str, Any] = {}
        token = None
        while True:
            page = self.client.search_runs([exp_id], filter_string=f"tags.{TAG_SWEEP} = '{sweep}'",
                                           run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            for r in page:
                key = "" if r.data.tags.get(TAG_ROLE) == "sweep" else r.data.tags.get(TAG_CELL)
                found.setdefault(key, r)
            token = page.token
            if not token:
                break
        base = {TAG_SWEEP: sweep}
        if "" in found:
            self.parent_id = found[""].info.run_id
            if found[""].info.status != "RUNNING":
                self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(exp_id, run_name=self.spec.name, tags={**base, TAG_ROLE: "sweep"})
            self.parent_id = run.info.run_id
            params = {"spec": self.spec.name, "run_dir": str(self.spec.run_dir.resolve()),
                      "cells": str(len(planned.cells)), "seeds": json.dumps(self.spec.seed_list)}
            self._batch(self.parent_id, params=params)
        for cs in planned.graph.cells:
            identity = cell_identity(cs.cell, cs.train)
            stages = ([("train", cs.train)] if cs.train is not None else []) + \
                [(f"evaluate {b}", s) for b, s in cs.evaluate.items()]
            self.cell_stages[identity] = [s.key for _, s in stages]
            for role, stage in stages:
                self.by_stage.setdefault(stage.key, []).append((identity, role, stage))
            if identity in self.runs:
                continue
            if identity in found:
                run = found[identity]
                self.runs[identity] = run.info.run_id
                self.logged[run.info.run_id] = {k[len(TAG_STAGE):] for k in run.data.tags if k.startswith(TAG_STAGE)}
                continue
            name = cs.cell.label + (f" seed {cs.cell.seed}" if len(self.spec.seed_list) > 1 else "")
            run = self.client.create_run(exp_id, run_name=name, tags={
                **base, TAG_ROLE: "cell", TAG_CELL: identity, "mlflow.parentRunId": self.parent_id})
            self.runs[identity] = run.info.run_id
            self.logged[run.info.run_id] = set()
            self._batch(run.info.run_id, params=cell_params(self.spec, cs.cell))

    def _sync(self) -> None:
        if self.parent_id is None:
            return
        records = self.store.stages()
        for key in self.by_stage:
            rec = records.get(key)
            if rec is not None and rec.status == "done":
                self._log_stage(key, records)

    def _log_stage(self, key: str, records: dict | None = None) -> None:
        if self.parent_id is None:
            return
        records = records if records is not None else self.store.stages()
        rec = records.get(key)
        if rec is None or rec.status != "done":
            return
        for identity, role, stage in self.by_stage[key]:
            run_id = self.runs[identity]
            if key[:16] in self.logged[run_id]:
                continue
            metrics = self._stage_metrics(rec, role, stage, records)
            self._batch(run_id, metrics=metrics, tags={TAG_STAGE + key[:16]: role})
            self.logged[run_id].add(key[:16])

    def _stage_metrics(self, rec, role: str, stage, records: dict) -> list:
        from mlflow.entities import Metric

        stamp = int((rec.finished or time.time()) * 1000)
        out: list = []

        def add(name: str, value: Any, step: int = 0) -> None:
            v = _number(value)
            if v is not None:
                out.append(Metric(name, v, stamp, step))

        if role == "train":
            add("stage/train/wall_s", rec.wall_s)
            add("stage/train/peak_mem_mb", rec.peak_mem_mb)
            for name, value in rec.result.items():
                add(f"train_result/{name}", value)
            from matrix.methods.checkpoint import TRAIN_LOG

            train_log = self.store.artifact_dir(rec.key, "train") / TRAIN_LOG
            if train_log.exists():
                for entry in json.loads(train_log.read_text()).get("steps", []):
                    for name, value in entry.items():
                        if name not in ("step", "examples"):
                            add(f"train/{name}", value, int(entry["step"]))
        else:
            bench = role[len("evaluate "):]
            for name, value in (rec.result.get("metrics") or {}).items():
                add(f"{bench}/{name}", value)
            add(f"stage/{bench}/wall_s", rec.wall_s)
            add(f"stage/{bench}/peak_mem_mb", rec.peak_mem_mb)
            shards = [records.get(d.key) for n, d in stage.deps.items() if n.startswith("shard")]
            if shards and all(s is not None for s in shards):  # the answering, split over shard stages
                add(f"stage/{bench}/answer_wall_s", sum(s.wall_s or 0.0 for s in shards))
                add(f"stage/{bench}/answer_peak_mem_mb", max(s.peak_mem_mb or 0.0 for s in shards))
        return out

    def _batch(self, run_id: str, metrics: list | None = None, params: dict | None = None,
               tags: dict | None = None) -> None:
        """log_batch within MLflow's limits; the tags go with the last call (a stage is marked logged
        only once all its numbers are in)."""
        from mlflow.entities import Param, RunTag

        metrics = metrics or []
        plist = [Param(k, v) for k, v in (params or {}).items()]
        calls = [(metrics[i:i + MAX_METRICS], []) for i in range(0, len(metrics), MAX_METRICS)]
        calls += [([], plist[i:i + MAX_PARAMS]) for i in range(0, len(plist), MAX_PARAMS)]
        calls = calls or [([], [])]
        for i, (m, p) in enumerate(calls):
            t = [RunTag(k, v) for k, v in (tags or {}).items()] if i == len(calls) - 1 else []
            if m or p or t:
                self.client.log_batch(run_id, metrics=m, params=p, tags=t)

    def _artifacts(self) -> None:
        from matrix.rundir import SPEC_SNAPSHOT
        from matrix.plot import KINDS as PLOTS, plot_run
        from matrix.report import render

        with tempfile.TemporaryDirectory(prefix="matrix-tracking-") as tmp:
            root = Path(tmp)
            (root / "tables").mkdir()
            for table in self.spec.tables:
                for fmt, ext in (("markdown", "md"), ("csv", "csv"), ("latex", "tex")):
                    try:
                        text = render(self.spec, self.store, fmt, table.id)
                    except Exception as e:  # noqa: BLE001 - a table that cannot be drawn yet is left out
                        log.info("tracking: table %s (%s) not rendered: %s", table.id, fmt, e)
                        continue
                    (root / "tables" / f"{table.id}.{ext}").write_text(text)
            for kind in PLOTS:
                try:
                    plot_run(self.spec, self.store, kind, root / "plots" / f"{kind}.png")
                except Exception as e:  # noqa: BLE001 - e.g. no train stage done yet: no cost plot
                    log.info("tracking: plot %s not drawn: %s", kind, e)
            snapshot = self.spec.run_dir / SPEC_SNAPSHOT
            if snapshot.exists():
                self.client.log_artifact(self.parent_id, str(snapshot))
            for sub in ("tables", "plots"):
                if (root / sub).is_dir() and any((root / sub).iterdir()):
                    self.client.log_artifacts(self.parent_id, str(root / sub), sub)

    def _close(self, summary) -> None:
        if self.parent_id is None:
            return
        records = self.store.stages()
        interrupted = bool(summary is not None and summary.interrupted)
        complete = True
        for identity, keys in self.cell_stages.items():
            done = all(records.get(k) is not None and records[k].status == "done" for k in keys)
            complete = complete and done
            status = "FINISHED" if done else ("KILLED" if interrupted else "FAILED")
            self.client.set_terminated(self.runs[identity], status)
        ok = summary is None or summary.ok
        self.client.set_terminated(self.parent_id, "FINISHED" if ok and complete
                                   else ("KILLED" if interrupted else "FAILED"))
