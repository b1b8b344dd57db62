"""An HTTP server on a thread of its own, for the test servers (the scripted OpenAI-compatible
server, the fault server): start and stop, a context manager, its base URL."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class BackgroundServer:
    """Subclasses give the request handler class (`handler`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._stopping = threading.Event()  # set on stop: wakes handlers in a slow reply
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        self._stopping.clear()
        self._httpd = httpd = ThreadingHTTPServer(self._address, self.handler())
        httpd.daemon_threads = True
        httpd.handle_error = lambda *args: None  # type: ignore[method-assign]  # clients vanish
        # a short poll interval keeps shutdown() quick, which adds up across many tests
        poll = {"poll_interval": 0.05}
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs=poll, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None or self._thread is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}/v1"
