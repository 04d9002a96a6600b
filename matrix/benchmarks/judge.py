"""The LLM judge: chat completions from any OpenAI-compatible server, cached on disk, never replaced.

    judge = Judge(spec.judge, cache_dir)
    replies = judge.complete(prompts, temperature=0.0, max_tokens=3, parse=parse_score)
    scores = [parse_score(r.text) for r in replies]  # parsers: matrix/benchmarks/replies.py
    record(judge.describe(), judge.usage())

Retries (429, 5xx, timeouts, dropped connections, with exponential backoff and `Retry-After`) are
the openai client's own: `judge.max_retries` in the spec (default 5), each request waiting up to
`judge.timeout` seconds (default 120). When they are spent the judge raises `JudgeError`; it never
answers with another model or a rule. Replies are cached one JSON file per request, keyed by the
model name, the exact messages and the decode settings, so a resumed or repeated sweep asks the
server nothing it has asked before. Errors and empty replies are never cached, and neither are replies
the caller's `parse` cannot read (a flaky judge's garbled reply would otherwise be the answer for
good): they are counted (`usage()["unparsed"]`) and asked again next time.

The API key is read from the environment only (`MATRIX_JUDGE_API_KEY`, then `OPENAI_API_KEY`) and
goes nowhere but the request header: not into the cache, the logs, `describe()` or any exception.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from typing_extensions import Self

log = logging.getLogger(__name__)

__all__ = [
    "API_KEY_VARS", "DEFAULT_BASE_URL", "Judge", "JudgeError", "JudgeReply", "Prompt",
    "default_cache_dir", "open_judge",
]

API_KEY_VARS = ("MATRIX_JUDGE_API_KEY", "OPENAI_API_KEY")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOOPBACK_PLACEHOLDER_KEY = "no-key-needed-on-loopback"
CACHE_VERSION = 1  # part of every cache key: bump it to orphan all entries written before

Prompt = str | list[dict]


class JudgeError(Exception):
    """The judge cannot answer: misconfigured, unreachable, or its retries are spent. Never holds the key."""


class JudgeSpecLike(Protocol):
    model: str
    base_url: str | None
    max_concurrency: int
    cache: bool
    # optional (plain test stand-ins may leave them out): timeout: float; max_retries: int


@dataclasses.dataclass(frozen=True)
class JudgeReply:
    text: str
    prompt_tokens: int  # as the server reported them when the reply was first fetched (0 if it did not)
    completion_tokens: int
    cached: bool  # True: no request was made for this reply in this call
    finish_reason: str | None = None  # "length" means max_tokens cut the reply short


def default_cache_dir() -> Path:
    """`$MATRIX_JUDGE_CACHE`, else `$XDG_CACHE_HOME/matrix/judge`, else `~/.cache/matrix/judge`."""
    if os.environ.get("MATRIX_JUDGE_CACHE"):
        return Path(os.environ["MATRIX_JUDGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "matrix" / "judge"


def _is_loopback(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_key(base_url: str) -> str:
    for var in API_KEY_VARS:
        if os.environ.get(var):
            return os.environ[var]
    if _is_loopback(base_url):
        return LOOPBACK_PLACEHOLDER_KEY  # a local server started without --api-key checks nothing
    raise JudgeError(
        f"no API key for the judge at {base_url}: set {API_KEY_VARS[0]} (or {API_KEY_VARS[1]}) "
        "in the environment; only a loopback server may run without one"
    )


def _messages(prompt: Prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m for m in prompt):
        return prompt
    raise TypeError(f"a judge prompt is a string or a non-empty list of chat messages, got {prompt!r:.200}")


def open_judge(spec: JudgeSpecLike, cache_dir: Path | None = None):
    """The judge a spec names: `Judge` for an OpenAI-compatible server, `ReferenceJudge` for rules."""
    if getattr(spec, "provider", "openai") == "reference":
        from matrix.benchmarks.reference_judge import ReferenceJudge

        return ReferenceJudge(spec)
    return Judge(spec, cache_dir)


def open_stage_judge(settings: dict | None, key: str | None, who: str):
    """The judge a stage was given: its settings (how to reach it, outside the stage key), checked against
    the judge key the stage was planned with (`who` names the stage's purpose in the errors)."""
    from matrix.spec import JudgeSpec

    if not settings:
        raise ValueError(f"{who} needs the judge, but no judge settings were given")
    spec = JudgeSpec.model_validate(settings)
    if spec.key() != key:
        raise ValueError(f"judge {spec.key()!r} differs from the stage's {key!r}")
    return open_judge(spec)


class Judge:
    """A chat-completion judge behind the openai client, with a disk cache and usage counters.

    Thread-safe: several stages may share one `Judge`, and several processes one cache directory.
    """

    def __init__(
        self,
        spec: JudgeSpecLike,
        cache_dir: Path | None = None,
        *,
        max_retries: int | None = None,
        timeout: float | None = None,
    ):
        provider = getattr(spec, "provider", "openai")
        if provider != "openai":
            raise JudgeError(f"Judge talks to OpenAI-compatible servers; provider {provider!r} goes through open_judge")
        self.model = spec.model
        self.base_url = (spec.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.max_concurrency = spec.max_concurrency
        self.use_cache = spec.cache
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        # The spec's judge.max_retries / judge.timeout (JudgeSpec), unless given here.
        self.max_retries = max_retries if max_retries is not None else getattr(spec, "max_retries", 5)
        self.timeout = timeout if timeout is not None else getattr(spec, "timeout", 120.0)
        self._secret = _api_key(self.base_url)
        # base_url is passed explicitly so OPENAI_BASE_URL in the environment cannot redirect the judge.
        # openai is imported here, not at the top: it takes ~1 s, and every CLI command that reads a
        # benchmark (report, status, verify) imports this module without ever asking a judge.
        from openai import OpenAI

        self._client = OpenAI(
            base_url=self.base_url, api_key=self._secret, max_retries=self.max_retries, timeout=self.timeout
        )
        self._lock = threading.Lock()
        self.calls = 0  # requests sent (each counted once, however many retries the client made)
        self.errors = 0  # requests that ended in JudgeError
        self.unparsed = 0  # replies the caller's `parse` could not read (returned, never cached)
        self.cached_hits = 0
        self.prompt_tokens = 0  # tokens spent in this process; cached replies add nothing
        self.completion_tokens = 0

    def __repr__(self) -> str:
        return f"Judge(model={self.model!r}, base_url={self.base_url!r})"

    def describe(self) -> dict[str, Any]:
        """What produced a judged score, to record beside it (never the key)."""
        return {
            "provider": "openai",
            "model": self.model,
            "base_url": self.base_url,
            "max_concurrency": self.max_concurrency,
            "cache": self.use_cache,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    def usage(self) -> dict[str, Any]:
        with self._lock:
            return {
                "model": self.model,
                "calls": self.calls,
                "errors": self.errors,
                "unparsed": self.unparsed,
                "cached_hits": self.cached_hits,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- asking ------------------------------------------------------------------------------------
    def complete(
        self, prompts: list[Prompt], *, temperature: float = 0.0, max_tokens: int = 1024,
        stop: list[str] | None = None, attempt: int = 0,
        parse: Callable[[str], Any] | None = None,
    ) -> list[JudgeReply]:
        """One reply per prompt, in order; up to `max_concurrency` requests in flight at once.

        `parse`: how the caller reads a reply (None: unreadable). A reply it cannot read is returned
        (the caller decides what that means) but never cached, and a cached one it cannot read (cached
        before this rule) is asked again.

        A prompt is a user message string or a list of chat messages. With the cache on, a prompt
        repeated within the batch is asked once. On the first failure the requests not yet started
        are dropped and `JudgeError` is raised; replies that arrived before it are already cached.
        `stop`: the server's stop strings. `attempt` > 0: a fresh sample of a request already asked
        (a retry at the same temperature); it is part of the cache key only, never sent.
        """
        requests = [_messages(p) for p in prompts]
        decode = {"temperature": float(temperature), "max_tokens": int(max_tokens)}
        if stop:
            decode["stop"] = list(stop)
        if attempt:
            decode["attempt"] = int(attempt)
        replies: list[JudgeReply | None] = [None] * len(requests)
        pending: dict[str, list[int]] = {}  # job id -> the prompt indices it answers
        for i, messages in enumerate(requests):
            if not self.use_cache:
                pending[str(i)] = [i]
                continue
            key = self.cache_key(messages, **decode)
            if key in pending:
                pending[key].append(i)
            elif (hit := self._load(key)) is not None and (parse is None or parse(hit.text) is not None):
                replies[i] = hit
                self._count(cached_hits=1)
            else:
                pending[key] = [i]

        if pending:
            workers = min(self.max_concurrency, len(pending))
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge")
            try:
                futures = {
                    pool.submit(self._ask, requests[idxs[0]], decode, key if self.use_cache else None,
                                parse): idxs
                    for key, idxs in pending.items()
                }
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        raise future.exception()
                for future, idxs in futures.items():
                    reply = future.result()
                    replies[idxs[0]] = reply
                    for dup in idxs[1:]:
                        replies[dup] = dataclasses.replace(reply, cached=True)
                        self._count(cached_hits=1)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return replies  # type: ignore[return-value]

    def check(self) -> list[str]:
        """Ask the server which models it serves (no tokens spent); raise unless `model` is one."""
        try:
            served = [m.id for m in self._client.models.list().data]
        except Exception as e:  # noqa: BLE001 - every failure becomes a JudgeError without the key
            raise self._failure(_cause(e)) from None
        if self.model not in served:
            listing = ", ".join(served[:20]) + (" ..." if len(served) > 20 else "")
            raise JudgeError(
                f"judge model {self.model!r} is not served at {self.base_url}; it serves: {listing}"
            )
        return served

    def _ask(self, messages: list[dict], decode: dict, key: str | None,
             parse: Callable[[str], Any] | None = None) -> JudgeReply:
        self._count(calls=1)
        try:
            sent = {k: v for k, v in decode.items() if k != "attempt"}
            response = self._client.chat.completions.create(model=self.model, messages=messages, **sent)
            text, finish_reason, prompt_tokens, completion_tokens = _read_completion(response)
        except Exception as e:  # noqa: BLE001 - every failure becomes a JudgeError without the key
            self._count(errors=1)
            raise self._failure(_cause(e)) from None
        self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        reply = JudgeReply(text, prompt_tokens, completion_tokens, False, finish_reason)
        if not text.strip():
            log.warning("judge %r at %s returned an empty reply; not cached", self.model, self.base_url)
        elif parse is not None and parse(text) is None:
            self._count(unparsed=1)
            log.warning("judge %r at %s: reply not readable (%.80r); not cached",
                        self.model, self.base_url, text)
        elif key is not None:
            self._store(key, reply, decode)
        return reply

    def _failure(self, cause: str) -> JudgeError:
        message = (
            f"judge model {self.model!r} at {self.base_url} failed: {cause} "
            f"(each request may take up to timeout={self.timeout:g} s; the openai client retries 408/409/429/5xx, "
            f"timeouts and dropped connections up to max_retries={self.max_retries} times; both are the spec's "
            f"judge settings; no other judge is used in its place)"
        )
        if len(self._secret) >= 4:  # shorter "keys" (`x`) are placeholders, and would mangle the text
            message = message.replace(self._secret, "***")
        return JudgeError(message)

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    # ---- the cache ---------------------------------------------------------------------------------
    def cache_key(self, messages: list[dict], *, temperature: float, max_tokens: int, **more: Any) -> str:
        """sha256 over (model, messages, decode settings); the server's URL is not part of it. Settings
        beyond temperature and max_tokens (stop, attempt) enter only when given, so older keys hold."""
        payload = {
            "v": CACHE_VERSION,
            "model": self.model,
            "messages": messages,
            "temperature": float(temperature),
            "max_tokens": int(max_tokens),
            **more,
        }
        canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _load(self, key: str) -> JudgeReply | None:
        path = self._path(key)
        try:
            entry = json.loads(path.read_text())
            text = entry["text"]
            if entry["key"] != key or not isinstance(text, str) or not text.strip():
                raise ValueError("entry does not match its key or has no text")
            return JudgeReply(
                text,
                int(entry["prompt_tokens"]),
                int(entry["completion_tokens"]),
                cached=True,
                finish_reason=entry.get("finish_reason"),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable judge cache entry %s (%s); asking again", path, e)
            return None

    def _store(self, key: str, reply: JudgeReply, decode: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "key": key,
            "model": self.model,
            **decode,
            "text": reply.text,
            "finish_reason": reply.finish_reason,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic: readers see the old state or the whole entry
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _read_completion(response: Any) -> tuple[str, str | None, int, int]:
    """(text, finish_reason, prompt_tokens, completion_tokens) of a chat completion, or ValueError."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise ValueError(f"the reply is not a chat completion (no choices): {str(response)[:200]!r}")
    message = getattr(choices[0], "message", None)
    if message is None:
        raise ValueError("the reply's first choice has no message")
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    return message.content or "", getattr(choices[0], "finish_reason", None), prompt_tokens, completion_tokens


def _cause(error: BaseException) -> str:
    import openai  # loaded already: only a Judge's requests raise its errors

    if isinstance(error, openai.APIStatusError):
        detail = error.message
        if detail == f"Error code: {error.status_code}":  # not OpenAI's error shape: show the body
            detail = error.response.text.strip()[:300] or "(empty body)"
        return f"HTTP {error.status_code}: {detail}"[:500]
    if isinstance(error, openai.APITimeoutError):
        return "the request timed out"
    if isinstance(error, openai.APIConnectionError):
        inner = error.__cause__ or error.__context__
        return f"connection failed ({type(inner).__name__}: {inner})" if inner else "connection failed"
    if isinstance(error, json.JSONDecodeError):
        return f"the reply body is not JSON ({error})"
    return f"{type(error).__name__}: {error}"[:500]
