"""`builtin` tools: read_file/list_dir confined to the working directory, http_get off by
default and, when enabled, fetching from a local stdlib HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from loopengt.errors import UserInputError
from loopengt.spec.models import ToolSpec
from loopengt.tools import load_tools
from loopengt.tools.builtin import MAX_FILE_BYTES, MAX_HTTP_BYTES, builtin_tool
from tests.support.tool_calls import call


def builtin(name: str, **fields: Any) -> BaseTool:
    return load_tools([ToolSpec(name=name, kind="builtin", **fields)])[0]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a few files, and a secret file next to (outside) it."""
    root = tmp_path / "work"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "owls.txt").write_text("three owls\n")
    (root / "readme.md").write_text("# hello\n")
    (tmp_path / "secret.txt").write_text("the password")
    monkeypatch.chdir(root)
    return root


def test_read_file_and_list_dir_inside_the_working_directory(workdir: Path) -> None:
    read_file, list_dir = builtin("read_file"), builtin("list_dir")
    assert call(read_file, path="notes/owls.txt") == ("three owls\n", "success")
    assert call(list_dir) == ("notes/\nreadme.md", "success")
    assert call(list_dir, path="notes") == ("owls.txt", "success")
    params = convert_to_openai_tool(read_file)["function"]["parameters"]
    assert params["required"] == ["path"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../secret.txt", "'..' is not allowed"),
        ("notes/../../secret.txt", "'..' is not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
    ],
)
def test_paths_leaving_the_working_directory_are_refused(
    workdir: Path, path: str, reason: str
) -> None:
    content, status = call(builtin("read_file"), path=path)
    assert status == "error"
    assert content.startswith("error: PermissionError: ")
    assert reason in content
    assert "password" not in content


def test_symlinks_pointing_outside_are_refused(workdir: Path) -> None:
    (workdir / "leak.txt").symlink_to(workdir.parent / "secret.txt")
    (workdir / "up").symlink_to(workdir.parent, target_is_directory=True)
    (workdir / "alias.txt").symlink_to(workdir / "readme.md")  # inside: fine
    read_file, list_dir = builtin("read_file"), builtin("list_dir")
    assert call(read_file, path="leak.txt") == (
        "error: PermissionError: 'leak.txt' points outside the working directory",
        "error",
    )
    assert call(read_file, path="up/secret.txt")[1] == "error"
    assert call(list_dir, path="up")[1] == "error"
    assert call(read_file, path="alias.txt") == ("# hello\n", "success")


def test_confined_to_the_directory_at_load_time(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_file = builtin("read_file")
    monkeypatch.chdir(workdir.parent)
    assert call(read_file, path="readme.md") == ("# hello\n", "success")
    assert call(read_file, path="secret.txt")[1] == "error"  # not in the load-time dir


def test_large_files_are_cut_at_the_cap(workdir: Path) -> None:
    # a 3-byte character straddles the cap: the cut must not break decoding
    body = "a" * (MAX_FILE_BYTES - 1) + "€" + "b" * 50_000
    (workdir / "big.txt").write_text(body)
    content, status = call(builtin("read_file"), path="big.txt")
    assert status == "success"
    text, _, note = content.rpartition("\n")
    assert text == "a" * (MAX_FILE_BYTES - 1)
    size = len(body.encode())
    assert note == f"[truncated: the file has {size} bytes, shown: the first {MAX_FILE_BYTES}]"


def test_binary_and_non_utf8_files_are_refused(workdir: Path) -> None:
    (workdir / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (workdir / "latin1.txt").write_bytes("café".encode("latin-1"))
    read_file = builtin("read_file")
    assert call(read_file, path="image.png") == (
        "error: ValueError: 'image.png' is a binary file",
        "error",
    )
    assert call(read_file, path="latin1.txt") == (
        "error: ValueError: 'latin1.txt' is not UTF-8 text",
        "error",
    )
    assert call(read_file, path="notes")[1] == "error"  # a directory is not a file


def test_a_builtin_under_another_name(workdir: Path) -> None:
    tool = builtin("files", builtin="list_dir", description="See what is here.")
    assert (tool.name, tool.description) == ("files", "See what is here.")
    assert call(tool) == ("notes/\nreadme.md", "success")


def test_http_get_is_off_by_default(workdir: Path) -> None:
    with pytest.raises(UserInputError) as err:
        builtin("fetch", builtin="http_get")
    assert str(err.value) == (
        "tool 'fetch': http_get is off by default; enable it with "
        "`[tools] http_get = true` in .loopengt/config.toml"
    )


# -- http_get enabled ------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        routes = {
            "/hello": (200, b"hello owls"),
            "/big": (200, b"x" * (MAX_HTTP_BYTES + 500)),
            "/missing": (404, b"no such page"),
        }
        if self.path.startswith("/to-"):  # /to-file, /to-ftp: redirects we must not follow
            self.send_response(302)
            target = {"/to-file": "file:///etc/passwd", "/to-ftp": "ftp://127.0.0.1/x"}
            self.send_header("Location", target[self.path])
            self.end_headers()
            return
        status, body = routes[self.path]
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_get(workdir: Path) -> BaseTool:
    (workdir / ".loopengt").mkdir()
    (workdir / ".loopengt" / "config.toml").write_text("[tools]\nhttp_get = true\n")
    return builtin("http_get")


def test_http_get_returns_status_and_text(http_get: BaseTool, http_base: str) -> None:
    assert call(http_get, url=f"{http_base}/hello") == ("HTTP 200 OK\n\nhello owls", "success")
    assert call(http_get, url=f"{http_base}/missing") == (
        "HTTP 404 Not Found\n\nno such page",
        "success",
    )


def test_http_get_caps_the_body(http_get: BaseTool, http_base: str) -> None:
    content, _ = call(http_get, url=f"{http_base}/big")
    head, _, body = content.partition("\n\n")
    assert head == "HTTP 200 OK"
    assert body == "x" * MAX_HTTP_BYTES + f"\n[truncated after {MAX_HTTP_BYTES} bytes]"


def test_http_get_fetches_only_http_urls(http_get: BaseTool, http_base: str) -> None:
    for url in ("file:///etc/passwd", "ftp://example.com/x", "127.0.0.1/hello"):
        content, status = call(http_get, url=url)
        assert status == "error"
        assert "only http:// and https:// URLs can be fetched" in content
    content, status = call(http_get, url=f"{http_base}/to-file")
    assert status == "error"
    assert "Redirection to url 'file:///etc/passwd' is not allowed" in content
    content, status = call(http_get, url=f"{http_base}/to-ftp")
    assert (content, status) == (
        "error: ValueError: 'ftp://127.0.0.1/x': only http:// and https:// URLs can be fetched",
        "error",
    )


def test_http_get_on_an_unreachable_host_is_error_text(http_get: BaseTool) -> None:
    content, status = call(http_get, url="http://127.0.0.1:9/")
    assert status == "error"
    assert content.startswith("error: ConnectionError: http://127.0.0.1:9/: ")


def test_builtin_tool_takes_an_explicit_root(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    tool = builtin_tool(ToolSpec(name="read_file", kind="builtin"), root=tmp_path)
    assert call(tool, path="a.txt") == ("A", "success")
