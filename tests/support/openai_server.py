"""A scripted, OpenAI-compatible chat-completions server for tests (standard library only).

    with ScriptedOpenAIServer(["hi", ToolCallReply("add", {"a": 1, "b": 2})]) as srv:
        llm = ChatOpenAI(base_url=srv.base_url, api_key="test-key", model="test-model")

Standalone: ``python -m tests.support.openai_server --script FILE.json --count-file F``
prints the base URL on its first stdout line and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.http_server import BackgroundServer

Json = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None  # generated as call_<request>_<index> when omitted


@dataclass(frozen=True)
class ToolCallReply:
    """An assistant message requesting tool calls: ``name``/``arguments`` and/or ``calls``."""

    name: str | None = None
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    calls: Sequence[ToolCall] = ()
    content: str | None = None

    def all_calls(self) -> list[ToolCall]:
        head = [ToolCall(self.name, self.arguments)] if self.name else []
        return head + list(self.calls)


@dataclass(frozen=True)
class JsonReply:
    """Structured output: JSON content, or a call to the function the request forces."""

    data: Any


@dataclass(frozen=True)
class ErrorReply:
    status: int = 500
    message: str = "injected error"
    type: str | None = None
    code: str | None = None

    def body(self) -> Json:
        fallback = ("server_error" if self.status >= 500 else "invalid_request_error", None)
        kind, code = _ERROR_DEFAULTS.get(self.status, fallback)
        fields = {"message": self.message, "type": self.type or kind, "param": None}
        return {"error": {**fields, "code": self.code or code}}


@dataclass(frozen=True)
class Delayed:
    reply: Reply
    seconds: float


Responder = Callable[[Json], "Reply"]
# A bare mapping is shorthand for JsonReply(mapping).
Reply = str | ToolCallReply | JsonReply | ErrorReply | Delayed | Mapping[str, Any] | Responder

_ERROR_DEFAULTS = {
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
}


def message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def last_user_text(request: Json) -> str:
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    return message_text(users[-1]) if users else ""


def echo_responder(request: Json) -> str:
    return "echo: " + last_user_text(request)[:200]


def count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def forced_function(request: Json) -> str | None:
    choice, tools = request.get("tool_choice"), request.get("tools") or []
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
    elif choice == "required" and len(tools) == 1:
        name = tools[0].get("function", {}).get("name")
    else:
        name = None
    return str(name) if name else None


def _from_script(entry: Any) -> Reply:
    """Convert one script-file entry to a reply."""
    if isinstance(entry, str):
        return entry
    if "delay" in entry:
        rest = {k: v for k, v in entry.items() if k != "delay"}
        return Delayed(_from_script(rest), float(entry["delay"]))
    if "error" in entry:
        return ErrorReply(**entry["error"])
    if "json" in entry:
        return JsonReply(entry["json"])
    if "tool_calls" in entry:
        calls = [ToolCall(**call) for call in entry["tool_calls"]]
        return ToolCallReply(calls=calls, content=entry.get("content"))
    if "text" in entry:
        return str(entry["text"])
    raise ValueError(f"unrecognised script entry: {entry!r}")


def load_script(path: str | Path) -> tuple[list[Reply], Responder | None]:
    """Read a script file: a JSON list of replies, or {"replies": [...], "responder": "echo"}."""
    raw = json.loads(Path(path).read_text())
    spec = {"replies": raw} if isinstance(raw, list) else raw
    responder = spec.get("responder")
    if responder not in (None, "echo"):
        raise ValueError(f"unknown responder {responder!r}; only 'echo' is built in")
    replies = [_from_script(entry) for entry in spec.get("replies", [])]
    return replies, echo_responder if responder else None


class ScriptedOpenAIServer(BackgroundServer):
    """Serves scripted replies in order; ``responder`` answers once the queue is empty."""

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        responder: Responder | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(host, port)
        self._replies = list(replies)
        self._responder = responder
        self._on_request = on_request
        self._lock = threading.Lock()
        self._requests: list[Json] = []
        self._headers: list[dict[str, str]] = []
        self._errors: list[str] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    @property
    def requests(self) -> list[Json]:
        with self._lock:
            return list(self._requests)

    @property
    def headers(self) -> list[dict[str, str]]:
        """Headers of each chat request (lower-cased names), aligned with ``requests``."""
        with self._lock:
            return list(self._headers)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def errors(self) -> list[str]:
        """Problems the server detected itself, e.g. the script running out."""
        with self._lock:
            return list(self._errors)

    def add_replies(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _next_reply(self, request: Json, headers: dict[str, str]) -> tuple[int, Reply]:
        with self._lock:
            self._requests.append(request)
            self._headers.append(headers)
            number = len(self._requests)
            if self._on_request is not None:
                self._on_request(number)  # under the lock so counts are written in order
            if self._replies:
                return number, self._replies.pop(0)
            if self._responder is not None:
                return number, self._responder
            message = f"ScriptedOpenAIServer: script exhausted at request #{number}"
            self._errors.append(message)
            return number, ErrorReply(500, message)

    def _respond(self, request: Json, headers: dict[str, str]) -> Any:
        """The completion, the list of stream chunks, or an ErrorReply for one request."""
        number, reply = self._next_reply(request, headers)
        try:
            reply = self._resolve(reply, request)
            if isinstance(reply, ErrorReply):
                return reply
            content, calls = _message(reply, request, number)
        except Exception as exc:  # a broken script must answer, not hang the client
            return ErrorReply(500, f"ScriptedOpenAIServer: {exc!r}")
        now, model = int(time.time()), request.get("model", "test-model")
        base = {"id": f"chatcmpl-scripted-{number}", "created": now, "model": model}
        usage = _usage(request, content, calls)
        if request.get("stream"):
            wants_usage = (request.get("stream_options") or {}).get("include_usage")
            return _chunks(base, content, calls, usage if wants_usage else None)
        message: Json = {"role": "assistant", "content": content, "refusal": None}
        message.update({"tool_calls": calls} if calls else {})
        choices = [_choice("tool_calls" if calls else "stop", message=message)]
        return {**base, "object": "chat.completion", "choices": choices, "usage": usage}

    def _resolve(self, reply: Reply, request: Json) -> Reply:
        for _ in range(10):  # callables may return Delayed or other callables
            if isinstance(reply, Delayed):
                self._stopping.wait(reply.seconds)
                reply = reply.reply
            elif callable(reply):
                reply = reply(request)
            elif isinstance(reply, Mapping):
                reply = JsonReply(dict(reply))
            else:
                return reply
        raise RuntimeError("reply nesting too deep")


def _message(reply: Reply, request: Json, number: int) -> tuple[str | None, list[Json]]:
    """Return (content, tool_calls) for a resolved, non-error reply."""
    if isinstance(reply, str):
        return reply, []
    if isinstance(reply, JsonReply):
        forced = forced_function(request)
        if forced is None:
            return json.dumps(reply.data), []
        reply = ToolCallReply(forced, json.dumps(reply.data))
    if not isinstance(reply, ToolCallReply):
        raise TypeError(f"unsupported reply type: {type(reply).__name__}")
    calls = []
    for i, call in enumerate(reply.all_calls()):
        args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        function = {"name": call.name, "arguments": args}
        call_id = call.id or f"call_{number}_{i}"
        calls.append({"id": call_id, "type": "function", "function": function})
    return reply.content, calls


def _usage(request: Json, content: str | None, calls: list[Json]) -> Json:
    prompt = count_tokens(" ".join(message_text(m) for m in request.get("messages", [])))
    out = count_tokens(" ".join([content or ""] + [c["function"]["arguments"] for c in calls]))
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}


def _choice(finish: str | None, **fields: Any) -> Json:
    return {"index": 0, **fields, "finish_reason": finish, "logprobs": None}


def _chunks(base: Json, text: str | None, calls: list[Json], usage: Json | None) -> list[Json]:
    """The chunks of a streamed reply, ending with the usage chunk if the client asked for it."""
    base = {**base, "object": "chat.completion.chunk"}
    deltas: list[Json] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in re.findall(r"\s*\S+", text or "")]
    deltas += [{"tool_calls": [{"index": i, **call}]} for i, call in enumerate(calls)]
    events = [{**base, "choices": [_choice(None, delta=d)]} for d in deltas]
    events.append({**base, "choices": [_choice("tool_calls" if calls else "stop", delta={})]})
    if usage is not None:
        events = [{**e, "usage": None} for e in events] + [{**base, "choices": [], "usage": usage}]
    return events


def _make_handler(server: ScriptedOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                return self._send_error(ErrorReply(404, f"no route for GET {self.path}"))
            model = {"id": "test-model", "object": "model", "created": 0, "owned_by": "scripted"}
            self._send_json(200, {"object": "list", "data": [model]})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
                self._answer(body)

        def _answer(self, body: bytes) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send_error(ErrorReply(404, f"no route for POST {self.path}"))
            try:
                request = json.loads(body or b"{}")
            except json.JSONDecodeError as exc:
                return self._send_error(ErrorReply(400, f"invalid JSON body: {exc}"))
            headers = {k.lower(): v for k, v in self.headers.items()}
            result = server._respond(request, headers)
            if isinstance(result, ErrorReply):
                self._send_error(result)
            elif request.get("stream"):
                self._send_sse(result)
            else:
                self._send_json(200, result)

        def _send_sse(self, events: list[Json]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")  # no length or chunking: body ends at close
            self.end_headers()
            self.close_connection = True
            for event in [*(json.dumps(e) for e in events), "[DONE]"]:
                self.wfile.write(f"data: {event}\n\n".encode())
                self.wfile.flush()

        def _send_error(self, error: ErrorReply) -> None:
            self._send_json(error.status, error.body())

        def _send_json(self, status: int, payload: Json) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _write_count(path: Path, count: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(count))
    os.replace(tmp, path)  # readers never see a half-written number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible test server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", help="JSON list of replies, or {replies, responder}")
    parser.add_argument("--responder", choices=["echo"], help="answer every request by echoing")
    parser.add_argument("--count-file", type=Path, help="file holding the chat request count")
    args = parser.parse_args(argv)

    replies, responder = load_script(args.script) if args.script else ([], None)
    responder = echo_responder if args.responder == "echo" else responder
    on_request = None
    if args.count_file is not None:
        _write_count(args.count_file, 0)
        on_request = functools.partial(_write_count, args.count_file)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ScriptedOpenAIServer(
        replies, responder=responder, port=args.port, on_request=on_request
    )
    with server:
        print(server.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
