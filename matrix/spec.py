"""The experiment spec: strict Pydantic models of what a YAML spec file may say, and what the spec
means for a method's training settings (`matrix.settings`). Reading a file is `matrix.specfile`."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AXES = ("base_model", "dataset", "scale", "method", "seed")
#: Questions answered per batch: a number, or "auto" (the largest that fits in memory, from 64 down,
#: halved on an out-of-memory error; matrix/models/handle.py). Never part of stage keys.
BatchSize = Annotated[int, Field(gt=0)] | Literal["auto"]
#: Largest count of records, images or questions a spec may ask for (LLaVA-1.5's whole SFT mix is 665k):
#: a typo such as `synthetic: 1.0e+30` is refused at validation instead of running out of disk or memory.
MAX_SIZE = 10_000_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info) -> Any:
        """Pydantic reads `true` as 1 where a number is expected; a spec saying `lr: true` is a mistake."""
        if _has_bool(value) and _wants_number(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, got a boolean (true/false)")
        return value


def _has_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, list) and any(isinstance(v, bool) for v in value))


def _wants_number(annotation: Any) -> bool:
    """Whether a field's type takes numbers (int, float, a Literal of numbers, optionally or in a list) and
    not booleans."""
    import types
    import typing

    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool or bool in args:
        return False
    if annotation in (int, float):
        return True
    if origin is typing.Annotated:
        return _wants_number(args[0])
    if origin is Literal:
        return all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    if origin is list or origin in (typing.Union, types.UnionType):
        return any(_wants_number(a) for a in args)
    return False


def parse_scale(value: Any) -> int:
    """`5k` -> 5000, `2.5k` -> 2500, 300 -> 300; a positive count up to MAX_SIZE."""
    n: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*", value)
        if m:
            n = float(m.group(1)) * (1000 if m.group(2) else 1)
    if n is None or n != int(n):
        raise ValueError(f"expected a size like 5000 or '5k', got {value!r}")
    if not 0 < n <= MAX_SIZE:
        raise ValueError(f"expected a size from 1 to {MAX_SIZE:,} records, got {value!r}")
    return int(n)


def parse_duration(value: Any) -> float:
    """Seconds: 90 -> 90, '90s' -> 90, '30m' -> 1800, '2h' -> 7200, '1.5d' -> 129600."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if m:
            return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    raise ValueError(f"expected a duration like 3600, '90s', '30m', '2h' or '1d', got {value!r}")


def scale_label(n: int) -> str:
    if n >= 1000 and n % 100 == 0:
        k = n / 1000
        return f"{k:g}k"
    return str(n)


# ---- models, datasets, benchmarks ----------------------------------------------------------------
class BaseModelSpec(Strict):
    family: str = Field(description="model family: tiny, llava")
    path: Path | None = Field(None, description="local model directory (llava-hf layout, or original LLaVA: converted "
                                                 "once; tiny: a folder the bootstrap wrote, in place of the shipped model)")
    template: str | None = Field(None, description="conversation template; default from the family")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="the dtype every stage loads this model in (generation, evaluation, SIMA's critic, "
                               "merging; training keeps its trained tensors in fp32 and computes in bf16 unless "
                               "this is float32). How a stage runs, not what it is: not part of stage keys")
    recipe: dict[str, Any] = Field(default_factory=dict, description="tiny: overrides of the bootstrap recipe")

    @model_validator(mode="after")
    def _one_source(self) -> "BaseModelSpec":
        if self.path is not None and self.recipe:
            raise ValueError("give 'path' (a model folder, used as it is) or 'recipe' (tiny: built by the bootstrap), "
                             "not both")
        return self


class MixturePart(Strict):
    dataset: str = Field(description="a spec dataset")
    size: int = Field(gt=0, le=MAX_SIZE,
                      description="its first N records (the seeded shuffle its subsets are prefixes of)")


class DatasetSpec(Strict):
    source: Literal["synthetic", "llava-json", "mixture"]
    kind: str | None = Field(None, description="synthetic: which recipe (ocrvqa, ...)")
    size: int | None = Field(None, gt=0, le=MAX_SIZE, description="synthetic: number of records to draw")
    path: Path | None = Field(None, description="llava-json: the JSON file")
    image_root: Path | None = Field(None, description="llava-json: folder the 'image' fields are relative to")
    parts: list[MixturePart] = Field(default_factory=list, description="mixture: the datasets it draws from")
    label: str | None = Field(None, description="name printed in tables")

    @model_validator(mode="after")
    def _check_source(self) -> "DatasetSpec":
        if self.source == "synthetic":
            if self.kind is None or self.size is None:
                raise ValueError("a synthetic dataset needs 'kind' and 'size'")
        elif self.source == "mixture":
            if not self.parts:
                raise ValueError("a mixture needs 'parts': [{dataset: NAME, size: N}, ...]")
        elif self.path is None or self.image_root is None:
            raise ValueError("a llava-json dataset needs 'path' and 'image_root'")
        return self


class BenchmarkSpec(Strict):
    id: str = Field(description="the entry's name in tables; also the benchmark plug-in unless 'benchmark' is given")
    benchmark: str | None = Field(None, description="the benchmark plug-in, when an entry's id differs (one "
                                                    "benchmark listed twice, e.g. scored by two judges)")
    path: Path | None = Field(None, description="folder in LLaVA's playground/data/eval layout")
    synthetic: int | None = Field(None, gt=0, le=MAX_SIZE,
                                  description="generate a synthetic version with this many images")
    dataset: str | None = Field(None, description="in-domain benchmarks (indomain): the spec dataset whose held-out "
                                                  "slice is asked; only cells trained on it (and untrained rows) are "
                                                  "evaluated")
    heldout: int = Field(500, gt=0, le=MAX_SIZE,
                         description="with 'dataset': records in the held-out slice (the last of the seeded "
                                     "shuffle whose prefixes are the training subsets)")
    limit: int | None = Field(None, gt=0, le=MAX_SIZE,
                              description="evaluate only the first N questions of each split or subtask")
    max_new_tokens: int | None = Field(None, gt=0)
    batch_size: BatchSize | None = Field(None, description="questions answered per batch, or 'auto'; default: "
                                                          "evaluation.batch_size (not part of stage keys)")
    shards: int = Field(1, ge=1, description="answer the questions in this many stages (e.g. one per GPU), "
                                             "then score all answers together")
    judge: "JudgeSpec | None" = Field(None, description="the judge scoring this benchmark; default: the spec's "
                                                         "'judge' (which also writes nSFT's conversations)")
    template: Path | None = Field(None, description="judged benchmarks (mmvet, mmhal, shr, llava-wild): the "
                                                    "official grading template (llava-wild: LLaVA's rule.json), "
                                                    "sent as the official script sends it; without it our own "
                                                    "wording, not comparable with published numbers")

    @property
    def plugin(self) -> str:
        return self.benchmark or self.id

    @model_validator(mode="after")
    def _one_source(self) -> "BenchmarkSpec":
        if sum(x is not None for x in (self.path, self.synthetic, self.dataset)) != 1:
            raise ValueError("give exactly one of 'path' (official files), 'synthetic' (size) or 'dataset' "
                             "(a held-out slice of a spec dataset)")
        return self

    def applies_to(self, dataset: str | None) -> bool:
        """Whether a cell trained on `dataset` (None: untrained) is evaluated on this benchmark."""
        return self.dataset is None or dataset is None or dataset == self.dataset


# ---- training ------------------------------------------------------------------------------------
class Forcible(Strict):
    """A spec-wide settings block (`training:`, `generation:`). Its values apply to the method rows whose
    method sets no paper default for that key; `force` makes them apply to every row (see `merge_settings`)."""

    force: bool | list[str] = Field(
        False, description="keys of this block that apply to every method row even where the method's paper "
                           "sets its own value: true (all of them) or a list such as [lr, lora.r]; unforced keys "
                           "fill in only what a method leaves unset. Row overrides always apply")

    @model_validator(mode="after")
    def _forced_keys_set(self) -> "Forcible":
        if isinstance(self.force, list):
            for name in self.force:
                head = name.split(".")[0]
                if head == "force" or head not in type(self).model_fields:
                    raise ValueError(f"force names {name!r}, which is not a setting of this block")
                if head not in self.model_fields_set:
                    raise ValueError(f"force names {name!r}, which this block does not set")
        return self


class LoraSpec(Strict):
    r: int = Field(8, gt=0)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)


class DeepSpeedSpec(Strict):
    stage: Literal[0, 1, 2, 3] = 2


class TrainingSpec(Forcible):
    """Training hyper-parameters. Precedence, lowest first: these defaults < the method's paper defaults <
    the spec-wide `training:` block (only for keys the method does not set, unless forced) < a row's
    `overrides`."""

    lr: float = Field(2e-6, gt=0)
    epochs: float = Field(1, gt=0)
    batch_size: int = Field(128, gt=0, description="global batch size")
    micro_batch_size: int = Field(16, gt=0, description="per step per process; accumulation makes up the rest")
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    max_length: int = Field(2048, gt=0)
    seed: int = 42
    bf16: bool = False
    lora: LoraSpec | None = Field(default_factory=LoraSpec)
    train_projector: bool = True
    projector_lr: float | None = Field(None, gt=0, description="the projector's own peak lr, a parameter group of "
                                                              "its own (LLaVA's mm_projector_lr; SIMA and CSR: "
                                                              "2e-5); null: the projector trains at lr")
    beta: float = Field(0.1, gt=0, description="DPO temperature")
    reference: Literal["precomputed", "adapters_off"] = Field(
        "precomputed", description="DPO's reference log-probs: precomputed once before the first step (the "
                                   "initial model, projector included), or adapters_off: at every step by the "
                                   "policy with LoRA switched off, so with the current, trained projector (what "
                                   "SeVa's, SIMA's and CSR's code do). One model resident either way")
    rejected_logps: Literal["rejected_tokens", "top_other_token"] = Field(
        "rejected_tokens", description="DPO: how a rejected answer is scored, for policy and reference: the sum "
                                       "of its own tokens' log-probs (standard DPO), or top_other_token, the sum "
                                       "at its positions of log p(the model's most likely token other than the "
                                       "rejected one), as SIMA's trainer does (SIMA's paper default)")
    kl_lambda: float = Field(0.0, ge=0, description="weight of the per-token KL to the reference (-kl methods)")
    deepspeed: DeepSpeedSpec | None = None
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass: less "
                                                            "memory, more time (LLaVA trains 7B with it on); "
                                                            "not part of the train stage's key")

    @model_validator(mode="after")
    def _batch(self) -> "TrainingSpec":
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size ({self.micro_batch_size})"
            )
        return self


class MethodEntry(Strict):
    id: str = Field(description="the row's name in the grid and tables; also the plug-in unless 'method' is given")
    method: str | None = Field(None, description="the method plug-in, when several rows use one (e.g. external)")
    label: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict, description="training keys for this method row only "
                                                                         "(win over everything else)")
    generation: dict[str, Any] = Field(default_factory=dict, description="generation keys for this method row only "
                                                                          "(win over everything else)")
    params: dict[str, Any] = Field(default_factory=dict, description="method-specific construction settings")
    sft_mix: str | None = Field(None, description="SFT methods: a spec dataset whose records are trained on "
                                                  "together with the constructed ones (the paper's Table 2 merges "
                                                  "its 15k into LLaVA's 665k SFT mix)")
    iterations: int = Field(1, ge=1, description="iterative training (CSR): iteration k starts from iteration "
                                                 "k-1's merged model and regenerates its data; one row per "
                                                 "iteration, ids '<id>-iter<k>'")

    @field_validator("overrides", "generation")
    @classmethod
    def _no_force(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "force" in value:
            raise ValueError("a row's own settings always apply: 'force' belongs in the spec-wide block")
        return value

    @property
    def plugin(self) -> str:
        return self.method or self.id

    def row_ids(self) -> list[str]:
        """The grid's method values of this entry: its id, or one id per iteration."""
        if self.iterations == 1:
            return [self.id]
        return [f"{self.id}-iter{k}" for k in range(1, self.iterations + 1)]


class GenerationSpec(Forcible):
    """Decode settings of the response-generation stage; a method's paper values (SIMA: 1024 new tokens)
    win over the spec-wide block unless it forces them, a row's `generation:` over both."""

    max_new_tokens: int = Field(512, gt=0)
    template: str | None = Field(None, description="the conversation template the generate stages ask with; "
                                                   "null: the base model's (SeVa's paper default: llava_v1)")
    batch_size: BatchSize = Field(16, description="questions answered per batch, or 'auto' (not part of stage keys)")

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        from matrix.models.conversation import TEMPLATES

        if value is not None and value not in TEMPLATES:
            raise ValueError(f"unknown conversation template {value!r}; known: {', '.join(sorted(TEMPLATES))}")
        return value


class EvaluationSpec(Strict):
    """Settings of the answer stages that a benchmark entry does not set itself."""

    batch_size: BatchSize = Field(16, description="questions answered per batch, or 'auto', for benchmarks "
                                                 "without their own batch_size (not part of stage keys)")


# ---- grid, resources, ray ------------------------------------------------------------------------
class GridSpec(Strict):
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    include: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("exclude", "include")
    @classmethod
    def _axes(cls, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for rule in rules:
            for key in rule:
                if key not in AXES:
                    raise ValueError(f"unknown grid axis {key!r}; axes are {', '.join(AXES)}")
        return rules


#: Time limit of a stage whose kind sets no `timeout`: generous, so that only a stuck stage meets it.
DEFAULT_TIMEOUTS_S = {"train": 3 * 86400.0, "generate": 86400.0, "construct": 86400.0, "evaluate": 86400.0}
FALLBACK_TIMEOUT_S = 6 * 3600.0


class ResourceSpec(Strict):
    cpus: float = Field(1, ge=0)
    gpus: float = Field(0, ge=0)
    memory_gb: float | None = Field(None, gt=0)
    max_retries: int = Field(
        1, ge=0,
        description="retries, after a backoff of 2, 4, 8... s, when the worker process or its node dies (e.g. "
                    "killed for memory); an exception the stage itself raises is final",
    )
    timeout: float | None = Field(
        None, gt=0,
        description="wall-clock limit of one attempt: seconds, or '90s', '30m', '2h', '1d'. Past it the stage "
                    "fails ('timed out after ...'), its work is stopped and the sweep goes on. Unset: train 3 "
                    "days, generate/construct/evaluate 1 day, other kinds 6 hours",
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    def limit_s(self, kind: str) -> float:
        """This request's timeout, else the kind's default."""
        return self.timeout or DEFAULT_TIMEOUTS_S.get(kind, FALLBACK_TIMEOUT_S)


class ResourcesSpec(Strict):
    """Resources per stage kind (`construct` is spelled so in YAML; the attribute avoids BaseModel.construct)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    model: ResourceSpec = Field(default_factory=ResourceSpec)
    data: ResourceSpec = Field(default_factory=lambda: ResourceSpec(cpus=0.5))
    subset: ResourceSpec = Field(default_factory=lambda: ResourceSpec(cpus=0.5))
    generate: ResourceSpec = Field(default_factory=ResourceSpec)
    construct_: ResourceSpec = Field(default_factory=lambda: ResourceSpec(cpus=0.5), alias="construct")
    train: ResourceSpec = Field(default_factory=ResourceSpec)
    evaluate: ResourceSpec = Field(default_factory=ResourceSpec)
    checkpoint: ResourceSpec = Field(default_factory=lambda: ResourceSpec(cpus=0.5))
    merge: ResourceSpec = Field(default_factory=ResourceSpec)

    def for_kind(self, kind: str) -> ResourceSpec:
        return getattr(self, "construct_" if kind == "construct" else kind)


class RaySpec(Strict):
    address: str | None = Field(None, description="null: embedded Ray on this machine; else a cluster address")
    num_cpus: int | None = Field(None, gt=0, description="embedded Ray only: CPUs to offer")
    num_gpus: int | None = Field(None, ge=0, description="embedded Ray only: GPUs to offer")


# ---- tables --------------------------------------------------------------------------------------
class MetricColumn(Strict):
    id: str
    benchmark: str
    metric: str | None = Field(None, description="metric name; default: the benchmark's headline")
    label: str | None = None
    higher_is_better: bool = True
    scale: float = Field(1.0, description="factor applied to deltas in the total (MMHal: 100/6)")
    in_total: bool = True
    decimals: int = Field(1, ge=0, le=6)


class ColumnGroup(Strict):
    id: str
    label: str | None = None
    metrics: list[MetricColumn]
    total: bool = True


class TableSpec(Strict):
    id: str
    title: str | None = None
    rows: list[Literal["base_model", "dataset", "scale", "method"]] = Field(
        default_factory=lambda: ["dataset", "method"],
        description="row axes; all but the last one form the row groups",
    )
    baseline: str = "baseline"
    where: dict[str, Any] = Field(default_factory=dict, description="axis filters, e.g. {scale: 10k}")
    groups: list[ColumnGroup]


class JudgeSpec(Strict):
    provider: Literal["openai", "reference"] = Field(
        "openai", description="openai: any OpenAI-compatible server; reference: rules for the synthetic world"
    )
    model: str
    base_url: str | None = None
    max_concurrency: int = Field(4, gt=0)
    cache: bool = True
    timeout: float = Field(120.0, gt=0, description="limit of one request in seconds ('2m' also works); the "
                                                    "openai client retries a timed-out request")
    max_retries: int = Field(5, ge=0, description="retries of a failed request (408/409/429/5xx, timeouts, "
                                                  "dropped connections) before the stage fails naming the judge")

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)

    def key(self) -> str:
        """What in the judge changes a score (part of stage keys): the model, and a non-default provider."""
        return self.model if self.provider == "openai" else f"{self.provider}:{self.model}"


class TrackingSpec(Strict):
    """Experiment tracking (MLflow), logged by the driver as stages are recorded (`matrix.tracking`)."""

    uri: str | None = Field(None, description="MLflow tracking URI (http://host:5000, sqlite:///file.db); "
                                              "default: sqlite:///<run dir>/mlflow.db")
    experiment: str | None = Field(None, description="MLflow experiment name; default: the spec's name")
    artifacts: bool = Field(True, description="log the rendered tables and plots with the sweep's run")


BenchmarkSpec.model_rebuild()


# ---- the spec ------------------------------------------------------------------------------------
class Spec(Strict):
    name: str
    seed: int = 0
    seeds: list[int] | None = None
    output_dir: Path | None = Field(None, description="run directory; default runs/<name>")
    base_models: dict[str, BaseModelSpec]
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    scales: list[int] = Field(default_factory=list)
    methods: list[MethodEntry]
    benchmarks: list[BenchmarkSpec]
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    grid: GridSpec = Field(default_factory=GridSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    ray: RaySpec = Field(default_factory=RaySpec)
    judge: JudgeSpec | None = None
    tables: list[TableSpec] = Field(default_factory=list)
    tracking: TrackingSpec | None = Field(None, description="log the sweep to MLflow; absent: no tracking")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        """The name becomes the run directory (runs/<name>): one plain path component, nothing that moves it."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+=@,-]*", value) or len(value) > 200:
            raise ValueError("expected a plain name (letters, digits and . _ - + = @ , not starting with a dot; "
                             "no '/', '..', spaces or control characters): it names the run directory")
        return value

    @field_validator("scales", mode="before")
    @classmethod
    def _scales(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [parse_scale(v) for v in value]
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _method_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _benchmark_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v} if isinstance(v, str) else v for v in value]
        return value

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.seed]

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.name

    def method_ids(self) -> list[str]:
        """The method axis of the grid, in spec order: an entry with `iterations: k` gives k rows."""
        return [row for m in self.methods for row in m.row_ids()]

    def method(self, method_id: str) -> MethodEntry:
        """The entry of a method row (an iteration row `<id>-iter<k>` belongs to entry `<id>`)."""
        return self.iteration(method_id)[0]

    def iteration(self, method_id: str) -> tuple[MethodEntry, int]:
        """(entry, k) of a method row: k is 1 unless the entry iterates."""
        for m in self.methods:
            if method_id in m.row_ids():
                return m, (m.row_ids().index(method_id) + 1 if m.iterations > 1 else 1)
        raise KeyError(f"unknown method {method_id!r}")

    def method_label(self, method_id: str) -> str:
        entry, k = self.iteration(method_id)
        name = entry.label or entry.id
        return f"{name} (iter {k})" if entry.iterations > 1 else name

    def benchmark(self, bench_id: str) -> BenchmarkSpec:
        return next(b for b in self.benchmarks if b.id == bench_id)

    def judge_for(self, bench_id: str) -> "JudgeSpec | None":
        """The judge that scores a benchmark: its own, else the spec's."""
        return self.benchmark(bench_id).judge or self.judge

    def batch_size(self, bench_id: str) -> int | str:
        """Questions per answering batch of a benchmark: its own, else the spec-wide evaluation default."""
        return self.benchmark(bench_id).batch_size or self.evaluation.batch_size


# ---- merging -------------------------------------------------------------------------------------
def _deep_merge(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for k, v in top.items():
            out[k] = _deep_merge(base.get(k), v) if k in base else v
        return out
    return copy.deepcopy(top)
