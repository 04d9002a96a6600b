"""Which ready stages the driver hands to Ray, and in what order.

Ray places a task where its resources are free, but it has no priorities across resource shapes: a
pending 8-GPU task does not stop 1-GPU tasks from taking every GPU that frees up, so a train stage
submitted alongside a stream of evaluations waits until the stream runs dry, and the evaluations it
would unlock wait with it. The driver therefore decides what to submit; Ray still decides where.

- Priority: a stage's estimated time to the end of the sweep along its longest path of dependents
  (its "bottom level": its own estimate plus the largest bottom level among the stages that depend
  on it). Generation that unlocks training and training that unlocks evaluations come first;
  among evaluations the longest go first (fewer stragglers at the end).
- Admission (`Admission.admit`), for stages that ask for GPUs: in priority order, a stage is
  submitted while the GPUs it asks for are free (free = the cluster's GPUs minus those asked for by
  stages already submitted and not finished). The first stage that does not fit gets a reservation:
  the moment, by the estimates of the running stages, when enough GPUs will be free for it. Lower
  stages still start now if they fit and are estimated to end by then, or if they use GPUs that the
  reservation leaves over at that moment (EASY backfilling). So a train stage never waits behind a
  queue of evaluations, and evaluations fill the GPUs around it. Stages that ask for no GPU are
  always submitted (in priority order) and left to Ray.
- Nodes (`nodes`: GPUs of each GPU node, when there are several): a stage's GPUs must be on one node,
  so GPUs counted across the cluster mislead (two free on each of four nodes is no room for an 8-GPU
  train stage), and Ray's own placement spreads 1-GPU stages over the nodes, which leaves no node
  whole for it. The same rules then run per node: an admitted stage gets a node (`where`: the fullest
  it fits on, which keeps whole nodes free for big stages), a blocked stage reserves the node that
  frees its GPUs first, and lower stages go to the other nodes, to the reserved one only by the
  backfilling rule above. The executor asks Ray for that node (a soft NodeAffinitySchedulingStrategy:
  Ray still runs the stage elsewhere if the node is gone).

Estimates (`estimate`) come from a cost model in seconds of one GPU of a LLaVA-7B-class model: train
proportional to examples x epochs, answering to questions x max_new_tokens (x beams), judge-bound
stages to the judge calls they make, the rest a few seconds. Only their ratios matter; a `sleep`
stage (scripts/bench_scheduling.py) carries its own `estimate`. Wrong estimates cost efficiency,
never correctness: every stage still runs once its inputs are done.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from matrix.runner.graph import StageGraph
from matrix.runner.stage import Stage

# Seconds per unit of work (rough LLaVA-1.5-7B figures, A100-class GPU; only their ratios matter).
TOKEN_S = 1e-3  # one question x one max_new_token, batched greedy decoding on one GPU
EXAMPLE_S = 0.24  # one example x one epoch of preference/SFT training on the stage's GPUs (8: ~40 min per 10k)
JUDGE_S = 0.125  # one judge call (about 1 s) at 8 concurrent requests
SMALL_S = 5.0  # data, subset, model, checkpoint, merge, a construct or scoring without a judge
DEFAULT_QUESTIONS = 1000

# Questions of each benchmark's full official evaluation set (used when the spec sets no `limit`).
QUESTIONS = {
    "sqa": 2017,  # ScienceQA-IMG test
    "gqa": 12578,  # testdev-balanced
    "textvqa": 5000,  # val
    "mmvet": 218,
    "mme": 2374,
    "mmbench": 4377,  # dev (en)
    "pope": 8910,  # random 2910 + popular 3000 + adversarial 3000
    "chair": 500,
    "mmhal": 96,
    "llava_wild": 60,
    "seed": 14233,  # SEED-Bench image
    "shr": 200,
}


def _examples(stage: Stage) -> int:
    """Examples a stage works through: the size of the nearest `subset` upstream (0 if none)."""
    seen: set[str] = set()
    todo = [stage]
    while todo:
        s = todo.pop(0)
        if s.kind == "subset":
            return int(s.params.get("n", 0))
        seen.add(s.key)
        todo += [d for name, d in sorted(s.deps.items()) if d.key not in seen and name != "model"]
    return 0


def _questions(params: dict) -> int:
    n = params.get("limit") or QUESTIONS.get(params.get("benchmark"), DEFAULT_QUESTIONS)
    if "shard" in params:
        i, k = params["shard"]
        n = n // k + (1 if i < n % k else 0)
    return n


def estimate(stage: Stage) -> float:
    """Estimated seconds a stage runs (see the module's docstring)."""
    p = stage.params
    if stage.kind == "sleep":
        return float(p.get("estimate", p.get("seconds", 0.0)))
    if stage.kind == "train":
        return max(1, _examples(stage)) * float(p.get("hp", {}).get("epochs", 1)) * EXAMPLE_S
    if stage.kind == "generate":
        return max(1, _examples(stage)) * int(p.get("max_new_tokens") or 512) * TOKEN_S
    if stage.kind == "construct":
        return SMALL_S + (_examples(stage) * JUDGE_S if p.get("judge") else 0.0)
    if stage.kind == "evaluate":
        if p.get("shards"):  # scores its shards' answers: loads no model
            return SMALL_S + (_questions(p) * JUDGE_S if p.get("judge") else 0.0)
        from matrix.benchmarks.base import BENCHMARKS

        plugin = BENCHMARKS.get(p["benchmark"])
        tokens = p.get("max_new_tokens") or plugin.max_new_tokens
        answer = _questions(p) * tokens * int(p.get("num_beams", 1)) * TOKEN_S
        if "shard" in p or not plugin.needs_judge:
            return SMALL_S + answer
        return SMALL_S + answer + _questions(p) * JUDGE_S
    return SMALL_S


def bottom_levels(graph: StageGraph, cost: Callable[[Stage], float] = estimate) -> dict[str, float]:
    """Each stage's estimated time from its start to the end of its longest chain of dependents."""
    dependents: dict[str, list[Stage]] = {k: [] for k in graph.stages}
    for s in graph.stages.values():
        for d in s.deps.values():
            dependents.setdefault(d.key, []).append(s)
    level: dict[str, float] = {}
    for s in reversed(graph.ordered()):  # dependents before the stages they depend on
        level[s.key] = _safe(cost, s) + max((level[t.key] for t in dependents.get(s.key, [])), default=0.0)
    return level


def _safe(cost: Callable[[Stage], float], stage: Stage) -> float:
    """An estimate, or a few seconds when the stage's parameters do not give one: a heuristic must never
    stop a sweep."""
    try:
        return float(cost(stage))
    except (LookupError, TypeError, ValueError):
        return SMALL_S


@dataclass
class Admission:
    """The submission policy of `Executor.run` (see the module's docstring). `gpus`: the cluster's GPUs."""

    graph: StageGraph
    gpus: float
    nodes: dict[str, float] | None = None  # GPUs of each GPU node by Ray node id: placed per node if several
    cost: Callable[[Stage], float] = estimate
    level: dict[str, float] = field(init=False)
    rank: dict[str, int] = field(init=False)
    where: dict[str, str] = field(init=False, default_factory=dict)  # stage key -> the node it was given

    def __post_init__(self) -> None:
        self.level = bottom_levels(self.graph, self.cost)
        self.rank = {s.key: i for i, s in enumerate(self.graph.ordered())}  # ties: the graph's order
        if self.nodes is not None and len(self.nodes) < 2:
            self.nodes = None  # one GPU node: the cluster's count is the node's

    def order(self, stages: list[Stage]) -> list[Stage]:
        return sorted(stages, key=lambda s: (-self.level.get(s.key, 0.0), self.rank.get(s.key, 0)))

    def admit(self, ready: list[tuple[Stage, float]], running: list[tuple[Stage, float, float]],
              now: float) -> list[Stage]:
        """Of the `ready` stages ((stage, GPUs it asks for)), those to submit now, in order; `running`:
        (stage, GPUs, monotonic time it was submitted) of every stage submitted and not finished."""
        # One node (or GPUs not placed): the whole cluster as one node "", and no placement recorded.
        capacity = self.nodes or {"": self.gpus}
        free = dict(capacity)
        on: dict[str, list[tuple[Stage, float, float]]] = {n: [] for n in free}
        for s, g, t0 in running:
            node = self.where.get(s.key) if self.nodes else ""
            if node in free and g > 0:
                free[node] -= g
                on[node].append((s, g, t0))
        nodes = list(free)  # ties between nodes: Ray's order of them
        out: list[Stage] = []
        reserved: tuple[str, float, float] | None = None  # (node, when it holds the blocked stage, GPUs over)
        gpus = {s.key: g for s, g in ready}
        for stage in self.order([s for s, _ in ready]):
            g = gpus[stage.key]
            if g <= 0 or self.gpus <= 0:
                out.append(stage)
                continue
            fitting = [n for n in nodes if free[n] + 1e-9 >= g]
            if reserved is not None:  # other nodes first; the reserved one only by the backfilling rule
                node_r, shadow, extra = reserved
                others = [n for n in fitting if n != node_r]
                if others:
                    fitting = others
                elif fitting and now + _safe(self.cost, stage) > shadow:
                    if g <= extra + 1e-9:
                        reserved = (node_r, shadow, extra - g)
                    else:
                        fitting = []
            if fitting:
                node = min(fitting, key=lambda n: free[n])  # the fullest node it fits on (min: the first of ties)
                on[node].append((stage, g, now))  # a reservation later in this round sees it end
                if self.nodes:
                    self.where[stage.key] = node
                free[node] -= g
                out.append(stage)
            elif reserved is None:
                holds = [n for n in nodes if capacity[n] + 1e-9 >= g]  # (none holds it: the executor failed it)
                if holds:
                    shadow, extra, node = min((*self._reserve(g, free[n], on[n], now), n) for n in holds)
                    reserved = (node, shadow, extra)
        return out

    def _reserve(self, need: float, free: float, running: list[tuple[Stage, float, float]],
                 now: float) -> tuple[float, float]:
        ends = sorted((max(now, t0 + _safe(self.cost, s)), g) for s, g, t0 in running if g > 0)
        shadow, have = now, free
        for end, g in ends:
            if have + 1e-9 >= need:
                break
            have += g
            shadow = end
        at_shadow = free + sum(g for end, g in ends if end <= shadow)  # ties at that moment free theirs too
        return shadow, max(0.0, at_shadow - need)
