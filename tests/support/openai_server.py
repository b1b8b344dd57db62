"""A scripted, OpenAI-compatible chat-completions server for tests (standard library only).

    with ScriptedOpenAIServer(replies=["hi", ToolCallReply("add", {"a": 1})]) as srv:
        ChatOpenAI(base_url=srv.base_url, api_key="test-key", model="test-model")

Standalone: ``python -m tests.support.openai_server --script FILE.json --count-file F``
prints the base URL on its first stdout line and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None


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


@dataclass(frozen=True)
class Delayed:
    reply: Reply
    seconds: float


Responder = Callable[[Json], "Reply"]
Reply = str | ToolCallReply | JsonReply | ErrorReply | Delayed | Mapping[str, Any] | Responder

_ERROR_DEFAULTS = {
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
}


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def last_user_text(request: Json) -> str:
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    return _message_text(users[-1]) if users else ""


def echo_responder(request: Json) -> str:
    return "echo: " + last_user_text(request)[:200]


def count_tokens(text: str) -> int:
    return len(text.split())


def _forced_function(request: Json) -> str | None:
    choice = request.get("tool_choice")
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name")
    tools = request.get("tools") or []
    if choice == "required" and len(tools) == 1:
        return tools[0].get("function", {}).get("name")
    return None


def _as_reply(data: Mapping[str, Any]) -> Reply:
    """Convert one script-file entry (a JSON object) to a reply."""
    if "delay" in data:
        rest = {k: v for k, v in data.items() if k != "delay"}
        return Delayed(_as_reply(rest), float(data["delay"]))
    if "error" in data:
        return ErrorReply(**data["error"])
    if "json" in data:
        return JsonReply(data["json"])
    if "tool_calls" in data:
        calls = [
            ToolCall(c["name"], c.get("arguments", {}), c.get("id")) for c in data["tool_calls"]
        ]
        return ToolCallReply(calls=calls, content=data.get("content"))
    if "text" in data:
        return str(data["text"])
    raise ValueError(f"unrecognised script entry: {data!r}")


def load_script(path: str | Path) -> tuple[list[Reply], Responder | None]:
    """Read a script file: a JSON list of replies, or {"replies": [...], "responder": "echo"}."""
    raw = json.loads(Path(path).read_text())
    spec = {"replies": raw} if isinstance(raw, list) else raw
    replies = [r if isinstance(r, str) else _as_reply(r) for r in spec.get("replies", [])]
    responder_name = spec.get("responder")
    if responder_name not in (None, "echo"):
        raise ValueError(f"unknown responder {responder_name!r}; only 'echo' is built in")
    return replies, echo_responder if responder_name else None


class ScriptedOpenAIServer:
    """Serves scripted replies in order; ``responder`` answers once the queue is empty."""

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        responder: Responder | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = ("test-model",),
        on_request: Callable[[int], None] | None = None,
    ) -> None:
        self._replies = list(replies)
        self._responder = responder
        self._address = (host, port)
        self.models = list(models)
        self._on_request = on_request
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[Json] = []
        self._headers: list[dict[str, str]] = []
        self._errors: list[str] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ScriptedOpenAIServer:
        self._httpd = ThreadingHTTPServer(self._address, _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="scripted-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a Delayed reply
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}/v1"

    @property
    def requests(self) -> list[Json]:
        with self._lock:
            return list(self._requests)

    @property
    def headers(self) -> list[dict[str, str]]:
        """Headers of each chat request, keys lower-cased, aligned with ``requests``."""
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

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._replies)

    def add_replies(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    # -- reply selection -------------------------------------------------------------------
    def _next_reply(self, request: Json, headers: dict[str, str]) -> tuple[int, Reply]:
        with self._lock:
            self._requests.append(request)
            self._headers.append(headers)
            number = len(self._requests)
            if self._replies:
                reply: Reply | None = self._replies.pop(0)
            elif self._responder is not None:
                reply = self._responder
            else:
                reply = None
                message = f"ScriptedOpenAIServer: script exhausted at request #{number}"
                self._errors.append(message)
            if self._on_request is not None:
                self._on_request(number)  # under the lock so counts are written in order
        return number, ErrorReply(500, message, "server_error") if reply is None else reply

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


def _completion_parts(reply: Reply, request: Json, number: int) -> tuple[str | None, list[Json]]:
    """Return (content, tool_calls) for a resolved, non-error reply."""
    if isinstance(reply, str):
        return reply, []
    if isinstance(reply, JsonReply):
        forced = _forced_function(request)
        if forced is None:
            return json.dumps(reply.data), []
        reply = ToolCallReply(forced, json.dumps(reply.data))
    if isinstance(reply, ToolCallReply):
        calls = []
        for i, call in enumerate(reply.all_calls()):
            args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
            function = {"name": call.name, "arguments": args}
            call_id = call.id or f"call_{number}_{i}"
            calls.append({"id": call_id, "type": "function", "function": function})
        return reply.content, calls
    raise TypeError(f"unsupported reply type: {type(reply).__name__}")


def _usage(request: Json, content: str | None, tool_calls: list[Json]) -> Json:
    prompt_text = " ".join(_message_text(m) for m in request.get("messages", []))
    completion_text = " ".join([content or ""] + [c["function"]["arguments"] for c in tool_calls])
    prompt, completion = max(1, count_tokens(prompt_text)), max(1, count_tokens(completion_text))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _make_handler(server: ScriptedOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                data = [
                    {"id": m, "object": "model", "created": 0, "owned_by": "scripted"}
                    for m in server.models
                ]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_error(ErrorReply(404, f"no route for GET {self.path}"))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send_error(ErrorReply(404, f"no route for POST {self.path}"))
            try:
                request = json.loads(body or b"{}")
            except json.JSONDecodeError as exc:
                return self._send_error(ErrorReply(400, f"invalid JSON body: {exc}"))
            headers = {k.lower(): v for k, v in self.headers.items()}
            number, reply = server._next_reply(request, headers)
            try:
                reply = server._resolve(reply, request)
                if isinstance(reply, ErrorReply):
                    return self._send_error(reply)
                content, tool_calls = _completion_parts(reply, request, number)
            except Exception as exc:  # a broken script must answer, not hang the client
                return self._send_error(ErrorReply(500, f"ScriptedOpenAIServer: {exc!r}"))
            base = {
                "id": f"chatcmpl-scripted-{number}",
                "created": int(time.time()),
                "model": request.get("model", "test-model"),
                "system_fingerprint": None,
            }
            usage = _usage(request, content, tool_calls)
            finish = "tool_calls" if tool_calls else "stop"
            try:
                if request.get("stream"):
                    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
                    self._stream(
                        base, content, tool_calls, finish, usage if include_usage else None
                    )
                else:
                    message = {"role": "assistant", "content": content, "refusal": None}
                    if tool_calls:
                        message["tool_calls"] = tool_calls
                    choice = {
                        "index": 0,
                        "message": message,
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                    self._send_json(
                        200,
                        {**base, "object": "chat.completion", "choices": [choice], "usage": usage},
                    )
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout fired)

        def _stream(
            self,
            base: Json,
            content: str | None,
            tool_calls: list[Json],
            finish: str,
            usage: Json | None,
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")  # no length or chunking: body ends at close
            self.end_headers()
            self.close_connection = True

            def chunk(delta: Json, finish_reason: str | None = None) -> Json:
                choice = {
                    "index": 0,
                    "delta": delta,
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
                return {**base, "object": "chat.completion.chunk", "choices": [choice]}

            events = [chunk({"role": "assistant", "content": ""})]
            events += [chunk({"content": piece}) for piece in re.findall(r"\s*\S+", content or "")]
            events += [
                chunk({"tool_calls": [{"index": i, **call}]}) for i, call in enumerate(tool_calls)
            ]
            events.append(chunk({}, finish))
            if usage is not None:
                events = [{**e, "usage": None} for e in events]
                events.append(
                    {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                )
            for event in events:
                self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def _send_error(self, error: ErrorReply) -> None:
            default_type, default_code = _ERROR_DEFAULTS.get(
                error.status,
                ("server_error" if error.status >= 500 else "invalid_request_error", None),
            )
            payload = {
                "error": {
                    "message": error.message,
                    "type": error.type or default_type,
                    "param": None,
                    "code": error.code or default_code,
                }
            }
            self._send_json(error.status, payload)

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", help="JSON list of replies, or {replies, responder}")
    parser.add_argument("--responder", choices=["echo"], help="answer every request by echoing")
    parser.add_argument("--count-file", type=Path, help="file holding the chat request count")
    args = parser.parse_args(argv)

    replies, responder = load_script(args.script) if args.script else ([], None)
    if args.responder == "echo":
        responder = echo_responder
    count_file: Path | None = args.count_file
    if count_file is not None:
        _write_count(count_file, 0)
    on_request = (lambda n: _write_count(count_file, n)) if count_file is not None else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ScriptedOpenAIServer(
        replies, responder=responder, host=args.host, port=args.port, on_request=on_request
    )
    with server:
        print(server.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
