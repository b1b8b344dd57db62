"""An OpenAI-compatible chat-completions server that misbehaves on purpose (standard library
only): seeded, it answers a share of requests with a fault instead of a reply.

Faults (``FAULT_KINDS``):

* ``429``, ``500``, ``503`` — an HTTP error with an OpenAI-style error body;
* ``slow`` — the reply comes after ``slow_seconds`` (set it past the step timeout);
* ``drop`` — the connection is reset mid-response: after the headers and half the body,
  or, for a streamed request (chunked, as real servers send it), after the first chunks of
  text;
* ``malformed`` — a structured-output request (``response_format`` or a forced function)
  gets a 200 whose content is cut-off JSON. Chosen only for structured requests.

Opt-in (not in ``FAULT_KINDS``): ``truncate`` — a streamed reply that ends early but
cleanly at the HTTP level (a body delimited by the connection's close, as HTTP/1.0-style
servers and some proxies send it): the first chunks, then no ``finish_reason`` and no
``[DONE]``. A non-streamed request gets the whole reply.

Which request gets a fault is decided by ``plan`` (the number of the request and the
request, to a kind or None) when given, else by the seed: the n-th time a given prompt is
sent has the same fate in every run, whatever order parallel requests arrive in.

    with FaultServer(responder, seed=7, rate=0.3, slow_seconds=3) as server:
        ...  # point `[llm] base_url` at server.base_url
    server.faults()  # Counter of what was served: {"ok": 12, "429": 2, "drop": 1, ...}

Standalone: ``python -m tests.support.fault_server --seed 7 --rate 0.3 --log-file F``
prints the base URL on its first stdout line, serves until SIGTERM/SIGINT, and appends one
JSON line per request to ``--log-file``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.http_server import BackgroundServer
from tests.support.openai_server import forced_function, message_text

Json = dict[str, Any]
FAULT_KINDS = ("429", "500", "503", "slow", "drop", "malformed")
EXTRA_KINDS = ("truncate",)  # opt-in: see the module docstring
HTTP_FAULTS = {
    "429": ("Rate limit reached for test-model: retry later", "requests", "rate_limit_exceeded"),
    "500": ("The server had an error while processing your request", "server_error", None),
    "503": ("The engine is currently overloaded, please try again later", "server_error", None),
}
# what a model that cannot keep to JSON sends: a reply cut off inside a string
MALFORMED = '{"pass": true, "next": "FINISH", "feedback": "cut off mid-str'

# what the model answers when it is not faulted: text, or (for structured requests) a value
Responder = Callable[[Json], Any]
Plan = Callable[[int, Json], str | None]


@dataclass(frozen=True)
class Served:
    """One request and what it got."""

    number: int
    key: str  # the request's messages, hashed: a prompt sent again has the same key
    step: str  # the step tag ([[name]]) in its messages, else the first words of its prompt
    fault: str | None
    stream: bool
    structured: bool


def user_texts(request: Json) -> list[str]:
    return [message_text(m) for m in request.get("messages") or [] if m.get("role") == "user"]


def request_key(request: Json) -> str:
    messages = json.dumps(request.get("messages"), sort_keys=True)
    return hashlib.sha256(messages.encode()).hexdigest()[:12]


def step_tag(request: Json) -> str:
    """``name`` of the first ``[[name]]`` in the request's messages, else its first words."""
    texts = [message_text(m) for m in request.get("messages") or []]
    for text in texts:
        found = re.search(r"\[\[([\w-]+)\]\]", text)
        if found:
            return found.group(1)
    users = user_texts(request)
    return " ".join((users[0] if users else "").split()[:6])


def structured_schema(request: Json) -> Json | None:
    """The JSON Schema a structured-output request asks for (response_format or a forced
    function), else None."""
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return dict((fmt.get("json_schema") or {}).get("schema") or {})
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return {"type": "object"}
    forced = forced_function(request)
    if forced is not None:
        for tool in request.get("tools") or []:
            function = tool.get("function") or {}
            if function.get("name") == forced:
                return dict(function.get("parameters") or {})
    return None


def example_of(schema: Json) -> Any:
    """A small value valid for ``schema``: the first enum choice, true, "ok", 1, one item."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: example_of(sub) for name, sub in props.items()}
    if kind == "array":
        return [example_of(schema.get("items") or {})] * max(1, schema.get("minItems", 1))
    if kind == "boolean":
        return True
    if kind in ("number", "integer"):
        return schema.get("minimum", 1)
    if kind == "null":
        return None
    return "ok"


def default_responder(request: Json) -> Any:
    """Echo for text; an example value for a structured request."""
    schema = structured_schema(request)
    if schema is not None:
        return example_of(schema)
    users = user_texts(request)
    return "echo: " + (users[-1] if users else "")[:200]


class FaultServer(BackgroundServer):
    """Serves ``responder``'s replies, faulting a seeded ``rate`` of requests (or as
    ``plan`` says) with one of ``kinds``."""

    def __init__(
        self,
        responder: Responder = default_responder,
        *,
        seed: int = 0,
        rate: float = 0.3,
        kinds: Iterable[str] = FAULT_KINDS,
        plan: Plan | None = None,
        slow_seconds: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
        on_served: Callable[[Served], None] | None = None,
    ) -> None:
        self.responder = responder
        self.seed = seed
        self.rate = rate
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(FAULT_KINDS) - set(EXTRA_KINDS)
        if unknown:
            known = FAULT_KINDS + EXTRA_KINDS
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {known}")
        super().__init__(host, port)
        self.plan = plan
        self.slow_seconds = slow_seconds
        self._on_served = on_served
        self._lock = threading.Lock()
        self._served: list[Served] = []
        self._requests: list[Json] = []
        self._seen: Counter[str] = Counter()
        self._contents: dict[int, str] = {}  # request number -> the reply's content

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    @property
    def served(self) -> list[Served]:
        with self._lock:
            return list(self._served)

    @property
    def requests(self) -> list[Json]:
        with self._lock:
            return list(self._requests)

    def faults(self) -> Counter[str]:
        """How many requests got each fault ("ok": none)."""
        return Counter(s.fault or "ok" for s in self.served)

    def calls_of(self, step: str) -> list[Served]:
        return [s for s in self.served if s.step == step]

    # -- deciding ----------------------------------------------------------------------------
    def _decide(self, request: Json) -> Served:
        key = request_key(request)
        structured = structured_schema(request) is not None
        with self._lock:
            number = len(self._served) + 1
            occurrence = self._seen[key]
            self._seen[key] += 1
            if self.plan is not None:
                fault = self.plan(number, request)
            else:
                # the n-th sending of a prompt has one fate, whatever the arrival order
                rng = random.Random(f"{self.seed}:{key}:{occurrence}")
                usable = [k for k in self.kinds if _applies(k, request, structured)]
                fault = rng.choice(usable) if usable and rng.random() < self.rate else None
            if fault is not None and not _applies(fault, request, structured):
                fault = None  # nothing to malform in a text reply, to truncate in a body
            served = Served(
                number, key, step_tag(request), fault, bool(request.get("stream")), structured
            )
            self._served.append(served)
            self._requests.append(request)
        if self._on_served is not None:
            self._on_served(served)
        return served

    def replies_of(self, step: str) -> list[str]:
        """The whole replies sent for ``step``'s requests (not the cut, malformed ones)."""
        with self._lock:
            whole = [s.number for s in self._served if s.step == step and s.fault in _WHOLE]
            return [self._contents[n] for n in whole if n in self._contents]

    def reply_for(self, request: Json, served: Served) -> str:
        """The content of the (unfaulted, or malformed) reply."""
        if served.fault == "malformed":
            content = MALFORMED
        else:
            value = self.responder(request)
            content = value if isinstance(value, str) else json.dumps(value)
        with self._lock:
            self._contents[served.number] = content
        return content


_WHOLE = (None, "slow")  # faults after which the reply was sent whole (if anyone listened)


def _applies(fault: str, request: Json, structured: bool) -> bool:
    if fault == "malformed":
        return structured
    if fault == "truncate":
        return bool(request.get("stream"))
    return True


# -- the wire ----------------------------------------------------------------------------------


def _completion(request: Json, served: Served, content: str) -> Json:
    prompt = sum(len(t.split()) for t in user_texts(request)) or 1
    out = max(1, len(content.split()))
    message: Json = {"role": "assistant", "content": content}
    forced = forced_function(request)
    finish = "stop"
    if forced is not None:  # structured output through a forced function call
        call = {"name": forced, "arguments": content}
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": f"call_{served.number}", "type": "function", "function": call}],
        }
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-fault-{served.number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(request.get("model") or "test-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out},
    }


def _chunks(request: Json, completion: Json) -> list[Json]:
    base = {k: completion[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    message = completion["choices"][0]["message"]
    deltas: list[Json] = [{"role": "assistant", "content": ""}]
    if message.get("tool_calls"):
        deltas.append({"tool_calls": [{"index": 0, **message["tool_calls"][0]}]})
    else:
        deltas += [{"content": p} for p in re.findall(r"\s*\S+|\s+$", message["content"] or "")]
    finish = completion["choices"][0]["finish_reason"]

    def choice(delta: Json, finish_reason: str | None) -> Json:
        return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}

    events = [{**base, "choices": [choice(d, None)]} for d in deltas]
    events.append({**base, "choices": [choice({}, finish)]})
    if (request.get("stream_options") or {}).get("include_usage"):
        events = [{**e, "usage": None} for e in events]
        events.append({**base, "choices": [], "usage": completion["usage"]})
    return events


def _make_handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                return self._send_json(404, _error_body(f"no route for GET {self.path}"))
            model = {"id": "test-model", "object": "model", "created": 0, "owned_by": "fault"}
            self._send_json(200, {"object": "list", "data": [model]})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
                self._answer(body)

        def _answer(self, body: bytes) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send_json(404, _error_body(f"no route for POST {self.path}"))
            try:
                request = json.loads(body or b"{}")
            except json.JSONDecodeError as exc:
                return self._send_json(400, _error_body(f"invalid JSON body: {exc}"))
            served = server._decide(request)
            fault = served.fault
            if fault in HTTP_FAULTS:
                message, kind, code = HTTP_FAULTS[fault]
                extra = {"Retry-After": "0"} if fault == "429" else {}
                return self._send_json(int(fault), _error_body(message, kind, code), extra)
            if fault == "slow" and server._stopping.wait(server.slow_seconds):
                return  # shutting down
            completion = _completion(request, served, server.reply_for(request, served))
            if request.get("stream"):
                self._send_sse(_chunks(request, completion), fault=fault)
            else:
                self._send_json(200, completion, drop=fault == "drop")

        def _send_sse(self, events: list[Json], *, fault: str | None) -> None:
            lines = [*(json.dumps(e) for e in events), "[DONE]"]
            if fault in ("drop", "truncate"):  # the first half of the text, and no end
                lines = lines[: max(2, len(events) // 2)]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            chunked = fault != "truncate"
            if chunked:  # as OpenAI, vLLM and llama.cpp send a stream
                self.send_header("Transfer-Encoding", "chunked")
            else:  # no length, no chunks: the body ends when the connection does
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            for line in lines:
                data = f"data: {line}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                self.wfile.flush()
            if fault == "drop":
                self._cut()
            elif chunked:
                self.wfile.write(b"0\r\n\r\n")

        def _send_json(
            self,
            status: int,
            payload: Json,
            headers: dict[str, str] | None = None,
            *,
            drop: bool = False,
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if drop:  # half the promised body, then the connection goes
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self._cut()
                return
            self.wfile.write(data)

        def _cut(self) -> None:
            """Reset the connection at once, as when a server process or a proxy dies: the
            client reads an incomplete body, then an error."""
            self.close_connection = True
            with contextlib.suppress(OSError):
                linger = struct.pack("ii", 1, 0)  # on, 0 s: close() sends RST, not FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.connection.close()

    return Handler


def _error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> Json:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible server that injects faults")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.3, help="share of requests faulted")
    parser.add_argument("--kinds", default=",".join(FAULT_KINDS), help="comma-separated")
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--log-file", type=Path, help="one JSON line per request served")
    args = parser.parse_args(argv)

    log_lock = threading.Lock()

    def log(served: Served) -> None:
        if args.log_file is not None:
            with log_lock, args.log_file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(asdict(served)) + "\n")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = FaultServer(
        seed=args.seed,
        rate=args.rate,
        kinds=[k for k in args.kinds.split(",") if k],
        slow_seconds=args.slow_seconds,
        port=args.port,
        on_served=log,
    )
    with server:
        print(server.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
