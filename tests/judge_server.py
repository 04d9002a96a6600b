"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tests of anything that calls a judge.

    with JudgeServer(["yes", error(429), Reply("[[1]]", delay=0.2)]) as server:
        client = OpenAI(base_url=server.url, api_key="x")
        ...
    assert len(server.requests) == 3

The script says what each request gets, in arrival order: a list (consumed one reply per request;
once it runs out, `default` answers), or a callable `(request_body) -> Reply | str` for replies
that depend on the request (used when requests arrive concurrently in no fixed order). A plain
string is a 200 reply with that text. Every request is recorded (path, headers, JSON body) in
`server.requests`, error and garbage replies included.

Only `POST /v1/chat/completions` (non-streaming) and `GET /v1/models` are served.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from typing_extensions import Self


@dataclass
class Reply:
    """One scripted response. `status` other than 200 sends an OpenAI-style error body."""

    text: str | None = "ok"  # the assistant message content (None sends `"content": null`)
    status: int = 200
    delay: float = 0.0  # seconds to wait before answering (to trigger client timeouts, reorder replies)
    prompt_tokens: int | None = None  # None: the number of words in the request's messages
    completion_tokens: int | None = None  # None: the number of words in `text`
    usage: bool = True  # False leaves `usage` out of the body, as some servers do
    raw: bytes | None = None  # sent as the body verbatim instead of a chat completion (garbage)
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Script = Iterable[Reply | str] | Callable[[dict], Reply | str]


def error(status: int, message: str = "scripted error", retry_after_ms: int | None = 10) -> Reply:
    """An HTTP error in OpenAI's error shape. `retry-after-ms` (honoured by the openai client)
    keeps its retries fast in tests; pass None to leave the client's own backoff in charge."""
    headers = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
    return Reply(text=message, status=status, headers=headers)


def garbage(body: bytes = b"<html>502 Bad Gateway</html>", content_type: str = "application/json") -> Reply:
    """A 200 whose body is not a chat completion (a proxy's HTML page claiming to be JSON)."""
    return Reply(raw=body, content_type=content_type)


def echo(body: dict) -> Reply:
    """Answer each request with the text of its last message."""
    content = body["messages"][-1]["content"]
    return Reply(content if isinstance(content, str) else json.dumps(content))


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: dict | None  # the parsed JSON body of a POST


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _words(messages: list[dict]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            total += sum(len(str(part.get("text", "")).split()) for part in content if isinstance(part, dict))
    return total


class JudgeServer:
    """A `ThreadingHTTPServer` on a free loopback port, run in a thread while the context is open."""

    def __init__(
        self,
        script: Script = (),
        *,
        default: Callable[[dict], Reply | str] | None = None,
        models: Iterable[str] = ("judge-model",),
    ):
        self._lock = threading.Lock()
        self._queue: deque[Reply | str] | None = None
        self._responder: Callable[[dict], Reply | str] | None = None
        if callable(script):
            self._responder = script
        else:
            self._queue = deque(script)
        self._default = default
        self.models = list(models)
        self.requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- the script ------------------------------------------------------------------------------
    def push(self, *replies: Reply | str) -> None:
        """Append replies to a list script."""
        if self._queue is None:
            raise TypeError("push() needs a list script, not a callable one")
        with self._lock:
            self._queue.extend(replies)

    def _next_reply(self, body: dict) -> Reply:
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is None:
            responder = self._responder or self._default
            if responder is None:
                return Reply(
                    "judge_server: the script has no reply left for this request",
                    status=500,
                    headers={"x-should-retry": "false"},
                )
            scripted = responder(body)
        return Reply(scripted) if isinstance(scripted, str) else scripted

    # ---- counting --------------------------------------------------------------------------------
    @property
    def chat_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL to give an OpenAI client: `http://127.0.0.1:<port>/v1`."""
        if self._server is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> JudgeServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="judge-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(owner: JudgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                self.close_connection = True

        def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json", headers or {})

        def do_GET(self) -> None:
            owner._record(Request("GET", self.path, _lower(self.headers), None))
            if self.path.rstrip("/") == "/v1/models":
                data = [{"id": m, "object": "model", "owned_by": "judge_server"} for m in owner.models]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = None
            owner._record(Request("POST", self.path, _lower(self.headers), body))
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                message = "the body must be JSON with a messages list"
                self._send_json(400, {"error": {"message": message, "type": "invalid_request"}})
                return
            try:
                reply = owner._next_reply(body)
            except Exception as e:  # noqa: BLE001 - a broken script answers 500 instead of dropping the line
                reply = Reply(
                    f"judge_server: the script raised {e!r}", status=500, headers={"x-should-retry": "false"}
                )
            if reply.delay:
                time.sleep(reply.delay)
            if reply.raw is not None:
                self._send(reply.status, reply.raw, reply.content_type, reply.headers)
            elif reply.status != 200:
                payload = {"error": {"message": reply.text, "type": "scripted", "code": reply.status}}
                self._send_json(reply.status, payload, reply.headers)
            else:
                self._send_json(200, _completion(body, reply), reply.headers)

    return Handler


def _completion(body: dict, reply: Reply) -> dict:
    payload: dict[str, Any] = {
        "id": "chatcmpl-judge-server",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply.text},
            "finish_reason": "stop",
        }],
    }
    if reply.usage:
        prompt = _words(body["messages"]) if reply.prompt_tokens is None else reply.prompt_tokens
        completion = reply.completion_tokens
        if completion is None:
            completion = len((reply.text or "").split())
        payload["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return payload
