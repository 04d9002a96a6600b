"""The submission policy (matrix/runner/priority.py): estimates, priorities, reservations and backfilling,
by hand on small graphs; then on embedded Ray with fake GPUs, judged by the sleep stages' own clocks
(never by wall-clock bounds a loaded machine can break)."""
from __future__ import annotations

import pytest

from matrix.spec import ResourcesSpec
from matrix.store import Store
from matrix.runner.executor import Executor
from matrix.runner.graph import StageGraph
from matrix.runner.priority import Admission, bottom_levels, estimate
from matrix.runner.stage import KINDS, Stage


def sleep(label: str, seconds: float = 0.0, gpus: float = 0, deps: dict | None = None, estimate: float | None = None,
          cuda: bool = False):
    params = {"seconds": seconds, "label": label, "resources": {"cpus": 0.5, "gpus": gpus}}
    if estimate is not None:
        params["estimate"] = estimate
    if cuda:
        params["cuda"] = True
    return Stage("sleep", params, deps or {}, label=label)


def graph_of(*stages: Stage) -> StageGraph:
    return StageGraph(stages={s.key: s for s in stages}, cells=[])


def test_estimates_follow_the_cost_model():
    # Worked by hand from the constants: 10k examples x 1 epoch x 0.24 s; 10k x 512 tokens x 1 ms;
    # MMBench 4377 questions x 1024 tokens x 1 ms + 5 s; MM-Vet's scoring 218 judge calls x 0.125 s + 5 s.
    data = Stage("data", {"what": "dataset", "source": "synthetic", "kind": "ocrvqa", "size": 1}, label="data")
    subset = Stage("subset", {"n": 10000, "seed": 0}, {"data": data}, label="subset")
    model = Stage("model", {"family": "llava", "template": "vicuna_v1"}, label="model")
    gen = Stage("generate", {"mode": "greedy", "max_new_tokens": 512}, {"model": model, "data": data, "subset": subset})
    con = Stage("construct", {"method": "gt-dpo", "version": "1", "params": {}},
                {"data": data, "subset": subset, "responses.greedy": gen})
    train = Stage("train", {"objective": "dpo", "hp": {"epochs": 2.0}}, {"model": model, "data": data, "examples": con})
    bench = Stage("data", {"what": "benchmark", "id": "mmbench", "source": "synthetic"}, label="bench")
    answer = Stage("evaluate", {"benchmark": "mmbench", "limit": None, "max_new_tokens": None},
                   {"model": model, "bench": bench, "checkpoint": train})
    shard = Stage("evaluate", {"benchmark": "mmvet", "limit": None, "max_new_tokens": None, "shard": [0, 1]},
                  {"model": model, "bench": bench})
    score = Stage("evaluate", {"benchmark": "mmvet", "limit": None, "judge": "gpt-4", "shards": 1},
                  {"bench": bench, "shard0": shard})
    assert estimate(train) == pytest.approx(4800.0)
    assert estimate(gen) == pytest.approx(5120.0)
    assert estimate(con) == pytest.approx(5.0)  # no judge: a few seconds
    assert estimate(answer) == pytest.approx(4377 * 1.024 + 5)
    assert estimate(score) == pytest.approx(218 * 0.125 + 5)
    assert estimate(shard) == pytest.approx(218 * 1.024 + 5)
    assert estimate(sleep("s", 3.0)) == 3.0 and estimate(sleep("s", 3.0, estimate=7.0)) == 7.0


def test_bottom_level_is_the_longest_chain_of_dependents():
    a = sleep("a", 1.0)
    b = sleep("b", 2.0, deps={"a": a})
    c = sleep("c", 5.0, deps={"a": a})
    d = sleep("d", 1.0, deps={"b": b, "c": c})
    levels = bottom_levels(graph_of(a, b, c, d))
    # By hand: d = 1; b = 2 + 1 = 3; c = 5 + 1 = 6; a = 1 + max(3, 6) = 7.
    assert {s.params["label"]: levels[s.key] for s in (a, b, c, d)} == {"a": 7.0, "b": 3.0, "c": 6.0, "d": 1.0}


def test_critical_work_is_admitted_first_and_the_rest_fills_what_is_left():
    evals = [sleep(f"e{i}", 1.0, gpus=1) for i in range(6)]
    train = sleep("train", 4.0, gpus=2)
    after = [sleep(f"after{i}", 1.0, gpus=1, deps={"t": train}) for i in range(3)]
    cpu = sleep("cpu", 0.1)
    policy = Admission(graph_of(*evals, train, *after, cpu), gpus=3)
    ready = [(s, s.params["resources"]["gpus"]) for s in (*evals, train, cpu)]
    # The train stage (level 5) first; one GPU is left: one evaluation; the CPU stage always goes.
    assert [s.params["label"] for s in policy.admit(ready, [], now=0.0)] == ["train", "e0", "cpu"]


def test_a_big_stage_reserves_gpus_and_only_what_ends_in_time_backfills():
    big = sleep("big", 10.0, gpus=4)
    unlocked = sleep("unlocked", 1.0, gpus=1, deps={"b": big})
    short = sleep("short", 2.0, gpus=1)
    long_ = sleep("long", 8.0, gpus=1)
    running = [sleep(f"r{i}", 5.0, gpus=1) for i in range(3)]
    policy = Admission(graph_of(big, unlocked, short, long_, *running), gpus=4)
    # 3 of 4 GPUs busy until t=5 (started at 0); at t=1 the big stage needs all 4: reserved for t=5.
    # `short` (ends at 3) backfills the free GPU; `long` (would end at 9) would delay it: held back.
    busy = [(r, 1, 0.0) for r in running]
    ready = [(s, s.params["resources"]["gpus"]) for s in (big, short, long_)]
    assert [s.params["label"] for s in policy.admit(ready, busy, now=1.0)] == ["short"]
    # On 5 GPUs, one GPU is left over at t=5 beyond the big stage's 4: `long` may take it.
    policy5 = Admission(graph_of(big, unlocked, short, long_, *running), gpus=5)
    ready5 = [(s, s.params["resources"]["gpus"]) for s in (big, long_)]
    assert [s.params["label"] for s in policy5.admit(ready5, busy[:3], now=1.0)] == ["long"]
    # Stages that overran their estimate count as ending now: nothing is backfilled past the reservation.
    assert [s.params["label"] for s in policy.admit(ready, busy, now=6.0)] == []


def test_a_reservation_counts_the_stages_admitted_before_it_in_the_same_round():
    first = sleep("first", 10.0, gpus=2, estimate=10.0)
    big = sleep("big", 4.0, gpus=4)
    after = sleep("after", 30.0, deps={"f": first})  # puts `first` ahead of `big`
    short = sleep("short", 1.0, gpus=1)
    policy = Admission(graph_of(first, big, after, short), gpus=4)
    # `first` takes 2 of 4 GPUs until t=10; `big` reserves t=10 (not t=0, as if `first` never ended), so
    # `short` (ends at t=1) runs now in the GPUs left.
    ready = [(s, s.params["resources"]["gpus"]) for s in (first, big, short)]
    assert [s.params["label"] for s in policy.admit(ready, [], now=0.0)] == ["first", "short"]


def test_on_several_nodes_a_big_stage_reserves_the_node_that_frees_first_and_the_rest_fill_the_others():
    big = sleep("big", 20.0, gpus=4)
    evals = [sleep(f"e{i}", 5.0, gpus=1) for i in range(4)]
    on_a, on_b = sleep("on_a", 10.0, gpus=1), sleep("on_b", 2.0, gpus=1)
    policy = Admission(graph_of(big, *evals, on_a, on_b), gpus=8, nodes={"a": 4, "b": 4})
    policy.where.update({on_a.key: "a", on_b.key: "b"})  # admitted earlier, running since t=0
    busy = [(on_a, 1, 0.0), (on_b, 1, 0.0)]
    ready = [(s, s.params["resources"]["gpus"]) for s in (big, *evals)]
    # 6 GPUs are free in all, but no node has 4: counted across the cluster, `big` would be submitted
    # and wait in Ray's queue while the evaluations took what frees. Per node it reserves node b (free
    # at t=2, node a at t=10); three evaluations fill node a; the fourth would hold node b past t=2.
    admitted = policy.admit(ready, busy, now=0.0)
    assert [s.params["label"] for s in admitted] == ["e0", "e1", "e2"]
    assert {policy.where[s.key] for s in admitted} == {"a"}
    # At t=2 node b is free: `big` goes there, the last evaluation to the node it fits on.
    busy = [(on_a, 1, 0.0)] + [(s, 1, 0.0) for s in admitted]
    admitted = policy.admit([(big, 4), (evals[3], 1)], busy, now=2.0)
    assert [(s.params["label"], policy.where[s.key]) for s in admitted] == [("big", "b")]
    # On one node the cluster's count is the node's: nothing is placed.
    one = Admission(graph_of(big, *evals), gpus=4, nodes={"a": 4})
    assert one.admit([(big, 4)], [], now=0.0) == [big] and one.where == {}


def test_without_gpus_every_ready_stage_is_admitted_in_priority_order():
    a, b = sleep("a", 1.0), sleep("b", 3.0)
    assert [s.params["label"] for s in Admission(graph_of(a, b), gpus=0).admit([(a, 0), (b, 0)], [], 0.0)] == ["b", "a"]


@pytest.fixture(scope="module")
def fake_gpus():
    from matrix.runner.cluster import connect, node_capacities

    conn = connect(None, num_cpus=4, num_gpus=2)
    yield node_capacities()
    conn.shutdown()


def run(tmp_path, nodes, stages):
    store = Store(tmp_path / "run")
    summary = Executor(store, graph_of(*stages), ResourcesSpec(), nodes).run()
    assert summary.ok, summary
    return {r.label: r.result for r in store.stages().values()}


@pytest.mark.slow
def test_a_train_stage_that_unlocks_evaluations_starts_before_independent_ones(fake_gpus, tmp_path):
    independent = [sleep(f"eval{i}", 0.2, gpus=1) for i in range(6)]  # first in the graph's order
    train = sleep("train", 0.5, gpus=2)
    unlocked = [sleep(f"unlocked{i}", 0.3, gpus=1, deps={"checkpoint": train}) for i in range(4)]
    r = run(tmp_path, fake_gpus, [*independent, train, *unlocked])
    # Both GPUs go to the train stage first: no independent evaluation ran before it ended.
    assert all(r[f"eval{i}"]["started"] >= r["train"]["ended"] for i in range(6)), r


@pytest.mark.slow
def test_a_big_stage_is_not_starved_by_small_ones_that_became_ready_with_it(fake_gpus, tmp_path):
    gate = sleep("gate", 0.3, gpus=1)
    before = [sleep(f"before{i}", 0.4, gpus=1) for i in range(3)]  # ready at once: may run when the gate ends
    # Ready with the big stage, and ahead of it in the graph's order. Estimated longer than `before`, so
    # none can end before a running `before` stage does (none is backfilled past the big stage's reservation).
    stream = [sleep(f"stream{i}", 0.2, gpus=1, deps={"g": gate}, estimate=0.5) for i in range(8)]
    big = sleep("big", 0.5, gpus=2, deps={"g": gate}, estimate=2.0)
    r = run(tmp_path, fake_gpus, [gate, *before, *stream, big])
    # Every small stage that became ready with the big one waited for it (on 2 GPUs, none ran beside it).
    assert all(r[f"stream{i}"]["started"] >= r["big"]["ended"] for i in range(8)), r


def test_every_kind_but_sleep_asks_for_a_worker_of_its_own_when_it_holds_a_gpu():
    import matrix.runner.kinds  # noqa: F401 - registers every kind

    kinds = {name: KINDS.get(name) for name in KINDS.names()}
    assert {"generate", "evaluate", "train", "construct", "merge", "model", "data"} <= set(kinds)
    for name, kind in kinds.items():
        if name != "sleep":
            assert kind.fresh_worker({}, 1.0), name
        # Without a GPU, only a kind that must give all its memory back (merging) asks for one.
        assert kind.fresh_worker({}, 0.0) == kind.FRESH_PROCESS, name
    assert kinds["merge"].fresh_worker({}, 0.0) and not kinds["train"].fresh_worker({}, 0.0)
    assert not kinds["sleep"].fresh_worker({}, 1.0) and kinds["sleep"].fresh_worker({"cuda": True}, 1.0)


@pytest.mark.slow
def test_every_stage_holding_a_gpu_gets_a_worker_process_of_its_own(fake_gpus, tmp_path):
    """A worker process that ran a GPU stage is not given another stage: its CUDA context stays on the GPU
    of the first (ray-project/ray#3245). Stages in a chain run one after another, so a reused worker would
    show up as a repeated pid."""
    chain, prev = [], None
    for i in range(4):
        prev = sleep(f"gpu{i}", 0.0, gpus=1, deps={"prev": prev} if prev else None, cuda=True)
        chain.append(prev)
    r = run(tmp_path, fake_gpus, chain)
    pids = [r[f"gpu{i}"]["pid"] for i in range(4)]
    assert len(set(pids)) == 4, pids
