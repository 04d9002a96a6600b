"""The stage graph: every cell's stages, with equal stages (equal keys) merged into one.

model / data -> subset -> generate -> construct -> train -> evaluate. An iterating method row
(`iterations: k`) chains: iteration k's generate, construct and train start from a `merge` stage of
iteration k-1's model and checkpoint, and its evaluations apply its checkpoint to that model. Generation runs once per
(base model, dataset, decode mode) on the largest subset of that dataset in the grid; smaller scales
use its first answers (subsets are prefixes of one seeded shuffle, so 5k is inside 10k). The
baseline's evaluations depend on the base model only, so they run once per base model.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from matrix.errors import UserError
from matrix.grid import Cell
from matrix.models.family import template_for
from matrix.registry import BENCHMARKS, FAMILIES, METHODS
from matrix.settings import RUN_TIME_TRAINING, generation_settings, training_settings
from matrix.spec import BaseModelSpec, Spec
from matrix.runner.stage import Stage


@dataclass
class CellStages:
    cell: Cell
    train: Stage | None
    evaluate: dict[str, Stage] = field(default_factory=dict)


@dataclass
class StageGraph:
    stages: dict[str, Stage]
    cells: list[CellStages]

    def ordered(self) -> list[Stage]:
        """Stages in dependency order (upstream first), stable across runs."""
        out: list[Stage] = []
        seen: set[str] = set()

        def visit(stage: Stage) -> None:
            if stage.key in seen:
                return
            for dep in stage.deps.values():
                visit(dep)
            seen.add(stage.key)
            out.append(stage)

        for stage in self.stages.values():
            visit(stage)
        return out

    def counts(self) -> Counter:
        return Counter(s.kind for s in self.stages.values())


def _file_fingerprint(path: Path) -> str | None:
    """Identity of an external input file or folder: content hash of a file, names+sizes of a folder."""
    path = Path(path).expanduser()
    if path.is_file():
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()[:16]
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix in {".json", ".jsonl", ".tsv", ".txt", ".csv"}:
                h.update(f"{p.relative_to(path)}:{p.stat().st_size}".encode())
        return h.hexdigest()[:16]
    return None


def _folder_fingerprint(path: Path) -> str | None:
    """Names, sizes and modification times of every file under a folder (cheap for GBs of weights)."""
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class _Builder:
    def __init__(self, spec: Spec, all_cells: list[Cell]):
        self.spec = spec
        self.all_cells = all_cells  # the whole grid: a selection (--only) must not change any key
        self.stages: dict[str, Stage] = {}

    def add(self, stage: Stage) -> Stage:
        return self.stages.setdefault(stage.key, stage)

    def dtype(self, base_model: str) -> str:
        """The dtype the stages that load `base_model` (or a model derived from it) load it in."""
        return self.spec.base_models[base_model].dtype

    def judge_settings(self, judge) -> dict | None:
        """How to reach a judge (server, concurrency): travels with the stage, outside its key."""
        return judge.model_dump(mode="json") if judge is not None else None

    def model(self, name: str) -> Stage:
        return self.model_of(self.spec.base_models[name], f"model {name}")

    def model_of(self, entry, label: str) -> Stage:
        family = FAMILIES.get(entry.family)()
        params = {"family": entry.family, "template": template_for(entry), **family.stage_params(entry)}
        return self.add(Stage("model", params, label=label))

    def evaluated(self, cell: Cell, train: Stage | None) -> tuple[Stage, Stage | None, str, str]:
        """(model stage, checkpoint stage or None, label, dtype) of what a cell evaluates: its base model
        with its trained checkpoint, or an external row's own model or checkpoint."""
        entry = self.spec.method(cell.method)
        method = METHODS.get(entry.plugin)
        who = f"{cell.method}/{cell.base_model}"
        model = method.evaluated_model(entry.params)
        if model is not None:
            own = BaseModelSpec.model_validate(model)
            return self.model_of(own, f"model {cell.method}"), None, who, own.dtype
        path = method.evaluated_checkpoint(entry.params)
        if path is not None:
            ckpt = self.add(Stage("checkpoint", {"path": str(path), "files": _folder_fingerprint(path)},
                                  label=f"checkpoint {cell.method}"))
            return self.model(cell.base_model), ckpt, who, self.dtype(cell.base_model)
        who = cell.label if train is not None else f"{cell.base_model} (base)"
        return self.start_model(cell), train, who, self.dtype(cell.base_model)

    def start_model(self, cell: Cell) -> Stage:
        """The model a cell's training starts from (and its checkpoint applies to): the base model, or for
        iteration k > 1 of an iterating row, iteration k-1's checkpoint merged into its own start model."""
        entry, k = self.spec.iteration(cell.method)
        if k == 1:
            return self.model(cell.base_model)
        prev = replace(cell, method=entry.row_ids()[k - 2])
        return self.add(Stage("merge", {"dtype": self.dtype(cell.base_model)},
                              {"model": self.start_model(prev), "checkpoint": self.train(prev)},
                              label=f"merge {prev.label}"))

    def dataset(self, name: str) -> Stage:
        ds = self.spec.datasets[name]
        if ds.source == "mixture":  # the first `size` records of each part's shuffle, as one dataset
            deps: dict[str, Stage] = {}
            for j, part in enumerate(ds.parts):
                deps[f"part{j}.data"] = self.dataset(part.dataset)
                deps[f"part{j}.subset"] = self.subset(part.dataset, part.size)
            params = {"what": "mixture", "parts": [p.dataset for p in ds.parts]}
            return self.add(Stage("data", params, deps, label=f"data {name}"))
        if ds.source == "synthetic":
            params = {"what": "dataset", "source": "synthetic", "kind": ds.kind, "size": ds.size, "seed": self.spec.seed}
        else:
            params = {
                "what": "dataset",
                "source": "llava-json",
                "path": str(Path(ds.path).expanduser().resolve()),
                "image_root": str(Path(ds.image_root).expanduser().resolve()),
                "sha": _file_fingerprint(ds.path),
            }
        return self.add(Stage("data", params, label=f"data {name}"))

    def benchmark_data(self, bench_id: str) -> Stage:
        b = self.spec.benchmark(bench_id)
        bench_id = b.plugin  # entries naming one plug-in share its files
        if b.dataset is not None:  # a held-out slice, after the largest training subset of that dataset
            params = {"what": "heldout", "id": bench_id, "n": b.heldout, "seed": self.spec.seed,
                      "after": self.largest_scale(None, b.dataset)}
            return self.add(Stage("data", params, {"data": self.dataset(b.dataset)},
                                  label=f"data {b.id} (held out of {b.dataset})"))
        if b.synthetic is not None:
            params = {"what": "benchmark", "id": bench_id, "source": "synthetic", "size": b.synthetic, "seed": self.spec.seed}
        else:
            path = Path(b.path).expanduser().resolve()
            params = {"what": "benchmark", "id": bench_id, "source": "files", "path": str(path),
                      "fingerprint": _file_fingerprint(path)}
        return self.add(Stage("data", params, label=f"data {bench_id}"))

    def subset(self, dataset: str, n: int) -> Stage:
        return self.add(Stage("subset", {"n": n, "seed": self.spec.seed}, {"data": self.dataset(dataset)},
                              label=f"subset {dataset}-{n}"))

    def largest_scale(self, base_model: str | None, dataset: str) -> int:
        """The largest scale of `dataset` in the whole grid, for `base_model` (None: any); 0 if none."""
        return max((c.scale for c in self.all_cells
                    if c.dataset == dataset and c.scale and base_model in (None, c.base_model)), default=0)

    def generate(self, base_model: str, dataset: str, mode: str, seed: int, extra: dict | None = None,
                 model: Stage | None = None, who: str | None = None, method: str | None = None) -> Stage:
        """One stage per (model, dataset, mode, settings, extra): `extra` holds mode settings such as SeVa's
        augmentation, so equal settings share a stage across methods and a greedy stage is one. `model`:
        the model that answers when it is not the base model (an iteration's merged model). `method`: the
        row whose generation settings apply (its paper's, `matrix.spec.resolved_generation`)."""
        n = self.largest_scale(base_model, dataset)
        gen = generation_settings(self.spec, method) if method is not None else self.spec.generation
        params = {"mode": mode, "max_new_tokens": gen.max_new_tokens, **(extra or {})}
        if gen.template and gen.template != template_for(self.spec.base_models[base_model]):
            params["template"] = gen.template  # a method's own (SeVa: llava_v1); the model's own is not keyed
        if mode != "greedy":
            params["seed"] = seed  # only sampled or augmented answers depend on the seed
        params.update(batch_size=gen.batch_size, dtype=self.dtype(base_model))  # not keyed
        deps = {"model": model or self.model(base_model), "data": self.dataset(dataset),
                "subset": self.subset(dataset, n)}
        return self.add(Stage("generate", params, deps, label=f"generate {mode} {who or base_model}/{dataset}-{n}"))

    def train(self, cell: Cell) -> Stage | None:
        entry = self.spec.method(cell.method)
        method = METHODS.get(entry.plugin)
        if method.objective == "none":
            return None
        plugin = method()
        start, k = self.start_model(cell), self.spec.iteration(cell.method)[1]
        who = cell.base_model if k == 1 else f"{cell.method}/{cell.base_model}"
        deps = {"data": self.dataset(cell.dataset), "subset": self.subset(cell.dataset, cell.scale)}
        for mode in method.responses:
            extra = plugin.generation_params(mode, entry.params, cell.base_model)
            deps[f"responses.{mode}"] = self.generate(cell.base_model, cell.dataset, mode, cell.seed, extra,
                                                      model=start, who=who, method=cell.method)
        construct_params = {"method": entry.plugin, "version": method.version, "params": entry.params}
        if entry.sft_mix is not None:  # a dataset trained on with the constructed examples (Table 2's 665k)
            deps["sft_mix"] = self.dataset(entry.sft_mix)
        files = {name: Path(path).expanduser().resolve() for name, path in plugin.input_files(entry.params).items()}
        if files:  # e.g. CSR's CLIP model: a new file or a changed one is a new construct stage
            construct_params["files"] = {name: {"path": str(path), "fingerprint": _folder_fingerprint(path)
                                                if path.is_dir() else _file_fingerprint(path)}
                                         for name, path in files.items()}
        if "model" in method.needs:  # SIMA's self-critic runs the model being aligned itself
            deps["model"] = start
        if plugin.uses_judge(entry.params):
            # The judge model changes what is constructed; its server address and concurrency do not.
            construct_params["judge"] = self.spec.judge.key() if self.spec.judge else None
        if "model" in method.needs or construct_params.get("judge"):
            construct_params["seed"] = cell.seed
        if "model" in method.needs:  # how the model runs (not keyed)
            construct_params.update(dtype=self.dtype(cell.base_model), batch_size=self.spec.generation.batch_size)
        if construct_params.get("judge"):
            construct_params["judge_settings"] = self.judge_settings(self.spec.judge)
        construct = self.add(Stage("construct", construct_params, deps, label=f"construct {cell.label}"))
        settings = training_settings(self.spec, cell.method)
        hp = settings.model_dump(mode="json", exclude=set(RUN_TIME_TRAINING))
        if self.spec.seeds:
            hp["seed"] = cell.seed
        train_deps = {"model": start, "data": self.dataset(cell.dataset), "examples": construct}
        params = {"objective": method.objective, "hp": hp, "dtype": self.dtype(cell.base_model),
                  "gradient_checkpointing": settings.gradient_checkpointing}
        return self.add(Stage("train", params, train_deps, label=f"train {cell.label}"))

    def answers_file(self, cell: Cell, bench_id: str) -> Path | None:
        """The row's own answer file for this benchmark (an external row's `params.answers`), if it gives one."""
        entry = self.spec.method(cell.method)
        return METHODS.get(entry.plugin).answer_files(entry.params).get(bench_id)

    def evaluates(self, cell: Cell, bench_id: str) -> bool:
        """Whether the cell has a number for this benchmark: an external row with answer files only
        has one just for the benchmarks it gives files for."""
        entry = self.spec.method(cell.method)
        return self.answers_file(cell, bench_id) is not None or METHODS.get(entry.plugin).answers_questions(entry.params)

    def evaluate(self, cell: Cell, train: Stage | None, bench_id: str) -> Stage:
        b = self.spec.benchmark(bench_id)
        params = {"benchmark": b.plugin, "limit": b.limit, "max_new_tokens": b.max_new_tokens}
        answers = self.answers_file(cell, bench_id)
        plugin = BENCHMARKS.get(b.plugin)
        if getattr(plugin, "num_beams", 1) > 1:
            params["num_beams"] = plugin.num_beams  # official decoding other than greedy (SHR: 5 beams)
        if plugin.needs_judge:
            # The judge model changes the score; its server address and concurrency do not.
            judge = self.spec.judge_for(bench_id)
            params["judge"] = judge.key() if judge else None
            if b.template is not None:  # the grading template changes the score: its content is in the key
                path = Path(b.template).expanduser().resolve()
                params["template"] = {"path": str(path), "sha": _file_fingerprint(path)}
        if answers is not None:  # scoring only: the row's answer file, no model, no answering stage
            params.pop("max_new_tokens")
            params["answers"] = {"path": str(answers), "sha": _file_fingerprint(answers)}
            return self.add(Stage("evaluate", params, {"bench": self.benchmark_data(bench_id)},
                                  label=f"evaluate {bench_id} {cell.method}/{cell.base_model} (answer file)"))
        model, checkpoint, who, dtype = self.evaluated(cell, train)
        answering = {"batch_size": self.spec.batch_size(bench_id), "dtype": dtype}  # not keyed
        deps = {"model": model, "bench": self.benchmark_data(bench_id)}
        if checkpoint is not None:
            deps["checkpoint"] = checkpoint
        if b.shards > 1 or plugin.needs_judge:
            # Each shard answers a contiguous slice of the questions (its own stage: its own GPU); the
            # evaluate stage then scores the answers of all shards together, loading no model. Judged
            # benchmarks always split (one shard at least): their answers do not depend on the judge,
            # so another judge scores the stored answers without generating them again.
            answer = {k: v for k, v in params.items() if k not in ("judge", "template")}
            n = b.shards
            shards = {f"shard{i}": self.add(Stage("evaluate", {**answer, "shard": [i, n], **answering}, deps,
                                                  label=f"answer {b.plugin} {who}" + (f" [{i + 1}/{n}]" if n > 1 else "")))
                      for i in range(n)}
            score = {**params, "shards": n}
            if plugin.needs_judge:
                score["judge_settings"] = self.judge_settings(self.spec.judge_for(bench_id))
            return self.add(Stage("evaluate", score, {"bench": deps["bench"], **shards},
                                  label=f"evaluate {bench_id} {who}"))
        return self.add(Stage("evaluate", {**params, **answering}, deps, label=f"evaluate {bench_id} {who}"))


def build(spec: Spec, cells: list[Cell], all_cells: list[Cell] | None = None) -> StageGraph:
    """Stages of `cells`; `all_cells` (default: `cells`) is the whole grid, which fixes shared stages."""
    builder = _Builder(spec, all_cells if all_cells is not None else cells)
    known = [b.id for b in spec.benchmarks]
    for m in spec.methods:  # a row's answer files (an external row's) must name benchmarks of the spec
        unknown = sorted(set(METHODS.get(m.plugin).answer_files(m.params or {})) - set(known))
        if unknown:
            raise UserError(f"methods: {m.id}: params.answers names {', '.join(unknown)}, which the spec's "
                            f"benchmarks do not list (known: {', '.join(known)})")
    out = []
    for cell in cells:
        train = builder.train(cell)
        evals = {b.id: builder.evaluate(cell, train, b.id) for b in spec.benchmarks
                 if b.applies_to(cell.dataset) and builder.evaluates(cell, b.id)}
        out.append(CellStages(cell, train, evals))
    return StageGraph(builder.stages, out)
