"""The judge client against a scripted loopback server: order, the client's own retries, the cache,
no silent fallback, the key kept out of errors; and the shared reply parsers."""
from __future__ import annotations

import threading
import time
import traceback
from types import SimpleNamespace

import pytest
from tests.judge_server import JudgeServer, Reply, echo, error, garbage

from matrix.benchmarks.judge import (
    LOOPBACK_PLACEHOLDER_KEY,
    Judge,
    JudgeError,
)
from matrix.benchmarks.replies import parse_rating, parse_score, parse_verdict

SECRET = "sk-test-DO-NOT-LEAK-1234567890"
MODEL = "judge-model"


@pytest.fixture(autouse=True)
def _key_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("MATRIX_JUDGE_API_KEY", SECRET)


@pytest.fixture
def make_judge(tmp_path):
    judges = []

    def make(server, *, model=MODEL, concurrency=4, cache=True, max_retries=2, timeout=2.0, base_url=None):
        spec = SimpleNamespace(
            provider="openai", model=model, base_url=base_url or server.url,
            max_concurrency=concurrency, cache=cache,
        )
        judge = Judge(spec, tmp_path / "judge-cache", max_retries=max_retries, timeout=timeout)
        judges.append(judge)
        return judge

    yield make
    for judge in judges:
        judge.close()


def _leaks(error: BaseException) -> bool:
    return SECRET in "".join(traceback.format_exception(error)) or SECRET in repr(error)


# ---- order, concurrency, retries -------------------------------------------------------------------
def test_replies_keep_prompt_order_with_concurrent_requests(make_judge):
    in_flight, most = 0, 0
    lock = threading.Lock()

    def slow_echo(body):
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        index = int(body["messages"][-1]["content"].split()[-1])
        time.sleep(0.02 * (8 - index))  # later prompts finish first
        with lock:
            in_flight -= 1
        return echo(body)

    prompts = [f"prompt {i}" for i in range(8)]
    with JudgeServer(slow_echo) as server:
        judge = make_judge(server, concurrency=4)
        replies = judge.complete(prompts)
    assert [r.text for r in replies] == prompts
    assert 1 < most <= 4
    assert not any(r.cached for r in replies)
    assert judge.usage()["calls"] == 8
    assert judge.usage()["prompt_tokens"] == 16 and judge.usage()["completion_tokens"] == 16


def test_429_then_200_is_retried_by_the_client(make_judge):
    with JudgeServer([error(429, "slow down"), "[[1]]"]) as server:
        judge = make_judge(server, max_retries=2)
        [reply] = judge.complete(["which is better?"])
    assert reply.text == "[[1]]" and not reply.cached
    assert len(server.chat_requests) == 2
    assert judge.usage()["calls"] == 1 and judge.usage()["errors"] == 0
    assert server.chat_requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_a_timeout_is_retried_by_the_client(make_judge):
    with JudgeServer([Reply("late", delay=1.0), "on time"]) as server:
        judge = make_judge(server, max_retries=1, timeout=0.3)
        [reply] = judge.complete(["q"])
    assert reply.text == "on time"
    assert len(server.chat_requests) == 2


def test_the_spec_sets_the_limit_and_retries_and_the_error_names_them(tmp_path):
    """judge.timeout / judge.max_retries from the spec: a server slower than the limit on every try
    ends in a JudgeError naming the limit, after exactly 1 + max_retries requests."""
    from matrix.spec import JudgeSpec

    with JudgeServer([Reply("late", delay=1.0), Reply("late", delay=1.0), "never asked"]) as server:
        spec = JudgeSpec(model=MODEL, base_url=server.url, timeout="0.3s", max_retries=1)
        with Judge(spec, tmp_path / "cache") as judge, pytest.raises(JudgeError) as caught:
            judge.complete(["q"])
        assert len(server.chat_requests) == 2  # the first try and max_retries=1
    assert judge.timeout == 0.3 and judge.max_retries == 1
    assert "timed out" in str(caught.value) and "timeout=0.3 s" in str(caught.value)


def test_persistent_500_raises_judge_error_naming_model_and_url_without_the_key(make_judge):
    def leaky_500(body):  # a server that echoes the request's credentials in its error message
        return error(500, f"upstream exploded for {server.chat_requests[-1].headers['authorization']}")

    with JudgeServer(leaky_500) as server:
        url = server.url
        judge = make_judge(server, max_retries=2)
        with pytest.raises(JudgeError) as caught:
            judge.complete(["q"])
    message = str(caught.value)
    assert MODEL in message and url in message and "500" in message
    assert not _leaks(caught.value)
    assert SECRET not in repr(judge) and SECRET not in str(judge.describe())
    assert len(server.chat_requests) == 3  # the first try and max_retries=2
    assert judge.usage()["errors"] == 1


def test_a_non_retryable_error_is_raised_at_once(make_judge):
    with JudgeServer([error(400, "bad request")]) as server:
        judge = make_judge(server, max_retries=3)
        with pytest.raises(JudgeError, match="HTTP 400"):
            judge.complete(["q"])
    assert len(server.chat_requests) == 1


def test_an_error_body_in_another_shape_is_shown(make_judge):
    pinned = Reply(raw=b'{"detail": "Server is pinned to gemma; requested judge-model."}', status=400)
    with JudgeServer([pinned]) as server:
        judge = make_judge(server)
        with pytest.raises(JudgeError, match="HTTP 400: .*Server is pinned to gemma"):
            judge.complete(["q"])


@pytest.mark.parametrize("reply,expected", [
    (garbage(), "not JSON"),
    (garbage(content_type="text/html"), "not a chat completion"),
    (garbage(b'{"choices": []}'), "not a chat completion"),
    (garbage(b'{"object": "error"}'), "not a chat completion"),
])
def test_garbage_bodies_raise_judge_error(make_judge, reply, expected):
    with JudgeServer([reply]) as server:
        judge = make_judge(server)
        with pytest.raises(JudgeError, match=expected) as caught:
            judge.complete(["q"])
    assert MODEL in str(caught.value) and not _leaks(caught.value)


def test_an_unreachable_server_raises_judge_error(make_judge):
    with JudgeServer() as server:
        url = server.url
    judge = make_judge(server, base_url=url, max_retries=0)  # nothing listens there any more
    with pytest.raises(JudgeError, match="connection failed"):
        judge.complete(["q"])


# ---- the cache -------------------------------------------------------------------------------------
def test_a_repeated_batch_is_served_from_the_cache_without_requests(make_judge, tmp_path):
    prompts = ["a b", [{"role": "system", "content": "be terse"}, {"role": "user", "content": "c"}], "d"]
    with JudgeServer(echo) as server:
        first = make_judge(server).complete(prompts, max_tokens=8)
        seen = len(server.requests)
        again = make_judge(server)  # a fresh process would see the same: the cache is on disk
        second = again.complete(prompts, max_tokens=8)
        assert len(server.requests) == seen == 3
    assert [r.text for r in second] == [r.text for r in first]
    assert all(r.cached for r in second) and not any(r.cached for r in first)
    assert [r.prompt_tokens for r in second] == [r.prompt_tokens for r in first]
    assert again.usage() == {
        "model": MODEL, "calls": 0, "errors": 0, "unparsed": 0, "cached_hits": 3, "prompt_tokens": 0,
        "completion_tokens": 0,
    }
    entries = list((tmp_path / "judge-cache").rglob("*"))
    files = [p for p in entries if p.is_file()]
    assert len(files) == 3 and all(p.suffix == ".json" for p in files)  # no temporary files left
    assert not any(SECRET in p.read_text() for p in files)


def test_decode_settings_and_model_are_part_of_the_key_but_the_url_is_not(make_judge):
    with JudgeServer(echo, models=[MODEL]) as server, JudgeServer(echo) as mirror:
        judge = make_judge(server)
        judge.complete(["q"], temperature=0.0)
        judge.complete(["q"], temperature=0.5)
        judge.complete(["q"], max_tokens=3)
        make_judge(server, model="other-judge").complete(["q"])
        assert len(server.chat_requests) == 4
        [reply] = make_judge(mirror).complete(["q"])  # same model name elsewhere: same cache entry
        assert reply.cached and not mirror.requests


def test_errors_and_empty_replies_are_not_cached(make_judge):
    with JudgeServer([error(400, "nope"), "", Reply(None), "fine"]) as server:
        judge = make_judge(server)
        with pytest.raises(JudgeError):
            judge.complete(["q"])
        assert judge.complete(["q"])[0].text == ""
        assert judge.complete(["q"])[0].text == ""  # `content: null`
        [reply] = judge.complete(["q"])
        assert reply.text == "fine" and not reply.cached
        assert len(server.chat_requests) == 4
        assert judge.complete(["q"])[0].cached


def test_replies_before_a_failure_are_cached_so_a_rerun_asks_only_the_rest(make_judge):
    broken = {"bad"}

    def script(body):
        text = body["messages"][-1]["content"]
        return error(400, "rejected") if text in broken else Reply(text, delay=0.05)

    with JudgeServer(script) as server:
        judge = make_judge(server, concurrency=4)
        with pytest.raises(JudgeError, match="rejected"):
            judge.complete(["one", "bad", "two"])
        broken.clear()
        before = len(server.chat_requests)
        replies = judge.complete(["one", "bad", "two"])
        assert len(server.chat_requests) == before + 1
    assert [r.cached for r in replies] == [True, False, True]


def test_judges_sharing_a_cache_concurrently_leave_only_whole_entries(make_judge, tmp_path):
    prompts = [f"p{i}" for i in range(12)]
    with JudgeServer(lambda body: Reply(echo(body).text, delay=0.01)) as server:
        judges = [make_judge(server, concurrency=3) for _ in range(3)]
        results = [None] * 3

        def run(k):
            results[k] = judges[k].complete(prompts)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cache = tmp_path / "judge-cache"
        (cache / "aa").mkdir(exist_ok=True)
        (cache / "aa" / ".aaaa.partial.tmp").write_text("{ left by a killed run")
        fresh = make_judge(server).complete(prompts)
    assert all([r.text for r in result] == prompts for result in results)
    assert all(r.cached for r in fresh)
    assert len(list(cache.rglob("*.json"))) == 12


def test_a_prompt_repeated_in_a_batch_is_asked_once(make_judge):
    with JudgeServer(echo) as server:
        judge = make_judge(server)
        replies = judge.complete(["x", "y", "x"])
        assert [r.text for r in replies] == ["x", "y", "x"]
        assert [r.cached for r in replies] == [False, False, True]
        assert len(server.chat_requests) == 2


def test_with_the_cache_off_every_prompt_is_asked(make_judge, tmp_path):
    with JudgeServer(echo) as server:
        judge = make_judge(server, cache=False)
        judge.complete(["x", "x"])
        judge.complete(["x"])
        assert len(server.chat_requests) == 3
    assert not (tmp_path / "judge-cache").exists()


def test_an_unreadable_cache_entry_is_asked_again(make_judge, tmp_path):
    with JudgeServer(["first", "second"]) as server:
        judge = make_judge(server)
        judge.complete(["q"])
        [entry] = [p for p in (tmp_path / "judge-cache").rglob("*.json")]
        entry.write_text("{ truncated")
        [reply] = judge.complete(["q"])
    assert reply.text == "second" and not reply.cached


# ---- key and server checks -------------------------------------------------------------------------
def test_a_loopback_server_needs_no_key(make_judge, monkeypatch):
    monkeypatch.delenv("MATRIX_JUDGE_API_KEY")
    with JudgeServer(["ok"]) as server:
        make_judge(server).complete(["q"])
    assert server.chat_requests[0].headers["authorization"] == f"Bearer {LOOPBACK_PLACEHOLDER_KEY}"


def test_openai_api_key_is_the_fallback(make_judge, monkeypatch):
    monkeypatch.delenv("MATRIX_JUDGE_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback")
    with JudgeServer(["ok"]) as server:
        make_judge(server).complete(["q"])
    assert server.chat_requests[0].headers["authorization"] == "Bearer sk-fallback"


def test_a_remote_server_without_a_key_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("MATRIX_JUDGE_API_KEY")
    spec = SimpleNamespace(
        model=MODEL, base_url="https://judge.example.org/v1", max_concurrency=1, cache=True
    )
    with pytest.raises(JudgeError, match="MATRIX_JUDGE_API_KEY"):
        Judge(spec, tmp_path)


def test_check_lists_models_and_refuses_an_unserved_one(make_judge):
    with JudgeServer(models=[MODEL, "other"]) as server:
        assert make_judge(server).check() == [MODEL, "other"]
        with pytest.raises(JudgeError, match="'missing' is not served"):
            make_judge(server, model="missing").check()
        assert not server.chat_requests


# ---- parsers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("[[1]]", 1),
    ("Response 2 is more accurate. [[2]]", 2),
    ("First I thought [[1]], but on reflection [[2]]", 2),   # the last one wins
    ("[[ 1 ]]", 1),
    ("[[2]] ... final: [[A]]", None),                        # the last one is not a verdict
    ("[[3]]", None),
    ("[[1]", None),
    ("1", None),
    ("", None),
    (None, None),
    ("[[1]] then [[2", None),                                # the last [[ is never closed
])
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


# MMHal's rule (eval_gpt_mmhal.py: `f'rating: {s}' in response.lower()` for s in 0..6, one hit); the
# value beside each is what that rule gives (None: MMHal warns and records 0). Official result, rule run
# by hand; the odd ones are the official quirks the findings list.
@pytest.mark.parametrize("text,expected", [
    ("The answer is mostly right.\nRating: 4", 4),
    ("rating: 0", 0),
    ("RATING: 6.", 6),
    ("Rating: 5. As I said, rating: 5", 5),   # the same rating twice is one hit
    ("Rating: 2 or maybe rating: 3", None),   # two ratings
    ("Rating: 7", None),                      # out of range
    ("I would give it a 5", None),
    ("", None),
    ("Rating:3", None), ("rating:4", None), ("Rating:  4", None),   # official: no "rating: N" substring
    ("Rating: 10", 1), ("Rating: 4.5", 4), ("Rating: 30", 3), ("rating: 06", 0),  # official: substrings
])
def test_parse_rating(text, expected):
    assert parse_rating(text, 0, 6) == expected


# MM-Vet's rule (mm-vet_evaluator.py: `float(content.split(" ")[0].strip())`, rejected outside [0, 1]);
# the value beside each is what that rule gives (None: MM-Vet asks again). Official result, rule run by hand.
@pytest.mark.parametrize("text,expected", [
    ("0.5", 0.5),
    ("1.0", 1.0),
    ("0", 0.0),
    ("0.3 because the prediction misses one element", 0.3),
    ("\n0.7", 0.7),                 # the first token "\n0.7" strips to 0.7
    ("1.2", None),
    ("-0.1", None),
    ("Correctness: 0.5", None),
    ("0.5.", None),
    ("", None),
    (None, None),
    (" 0.7", None),                 # official: the first token is "" (a leading space)
    ("0.5\nThe answer", None),      # official: "0.5\nThe" is one token
    ("0.5\t1", None),
])
def test_parse_score(text, expected):
    assert parse_score(text) == expected


def test_parse_score_accepts_nan_as_mm_vet_does():
    import math

    # official: float("nan") fails neither `> 1.0` nor `< 0.0`, so MM-Vet keeps it (and its total is nan)
    assert math.isnan(parse_score("nan"))
# ---- unreadable replies and the spec's timeout / retries (issue 14) --------------------------------
def test_unreadable_replies_are_not_cached_so_a_healthy_judge_is_asked_again(make_judge):
    with JudgeServer(["banana", "0.7"]) as flaky:
        judge = make_judge(flaky, concurrency=1)
        replies = judge.complete(["q1", "q2"], max_tokens=3, parse=parse_score)
        assert [r.text for r in replies] == ["banana", "0.7"]  # returned: the caller scores it (0) and says so
        assert judge.usage()["unparsed"] == 1
    with JudgeServer(["0.8"]) as healthy:
        again = make_judge(healthy).complete(["q1", "q2"], max_tokens=3, parse=parse_score)
        assert len(healthy.chat_requests) == 1  # only the unreadable one is asked again
        assert [parse_score(r.text) for r in again] == [0.8, 0.7] and [r.cached for r in again] == [False, True]
        third = make_judge(healthy).complete(["q1", "q2"], max_tokens=3, parse=parse_score)
        assert len(healthy.chat_requests) == 1 and all(r.cached for r in third)


def test_an_unreadable_reply_cached_before_is_asked_again(make_judge):
    with JudgeServer(["banana", "0.5"]) as server:
        judge = make_judge(server)
        judge.complete(["q"])  # no parser given: cached, as every judge did before
        [reply] = judge.complete(["q"], parse=parse_score)
        assert reply.text == "0.5" and not reply.cached and len(server.chat_requests) == 2
        assert judge.complete(["q"], parse=parse_score)[0].cached


@pytest.mark.parametrize("retries", [0, 2])
def test_timeout_and_retries_come_from_the_judge_spec(tmp_path, retries):
    from matrix.spec import JudgeSpec

    with JudgeServer(lambda body: Reply("late", delay=3.0)) as server:
        spec = JudgeSpec(model=MODEL, base_url=server.url, timeout=0.2, max_retries=retries)
        with Judge(spec, tmp_path / "cache") as judge:
            assert (judge.timeout, judge.max_retries) == (0.2, retries)
            with pytest.raises(JudgeError, match="timed out"):
                judge.complete(["q"])
        assert len(server.chat_requests) == 1 + retries
        assert judge.describe()["timeout"] == 0.2 and judge.describe()["max_retries"] == retries


def test_judge_timeout_and_retries_are_validated():
    from pydantic import ValidationError

    from matrix.spec import JudgeSpec

    assert (JudgeSpec(model="m").timeout, JudgeSpec(model="m").max_retries) == (120.0, 5)
    for bad in ({"timeout": 0}, {"timeout": -1}, {"max_retries": -1}, {"max_retries": True}):
        with pytest.raises(ValidationError):
            JudgeSpec(model="m", **bad)
