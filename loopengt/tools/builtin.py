"""`builtin` tools: read_file and list_dir confined to the working directory, and http_get
(off unless `[tools] http_get = true` in .loopengt/config.toml).

A refused path or request raises; the tool loop hands the model that error text, so it can
try again with a path or URL it is allowed to use.
"""

from __future__ import annotations

import codecs
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from loopengt.config import Config
from loopengt.errors import UserInputError
from loopengt.spec.models import ToolSpec

MAX_FILE_BYTES = 100_000
MAX_DIR_ENTRIES = 500
HTTP_TIMEOUT_SECONDS = 15.0
MAX_HTTP_BYTES = 100_000


def builtin_tool(
    spec: ToolSpec, config: Config | None = None, root: Path | None = None
) -> BaseTool:
    """The builtin a spec entry names; files are confined to ``root`` (default: the
    project root of ``config``, else the working directory now, at load time)."""
    kind = spec.builtin or spec.name
    config = config or Config.load()
    if kind == "http_get" and config.tools.get("http_get") is not True:
        raise UserInputError(
            f"tool {spec.name!r}: http_get is off by default; enable it with "
            "`[tools] http_get = true` in .loopengt/config.toml"
        )
    base = (root or config.root).resolve()
    makers: dict[str, Callable[[], Callable[..., str]]] = {
        "read_file": lambda: _read_file(base),
        "list_dir": lambda: _list_dir(base),
        "http_get": lambda: http_get,
    }
    func = makers[kind]()
    return StructuredTool.from_function(
        func, name=spec.name, description=spec.description or (func.__doc__ or "").strip()
    )


def confined(root: Path, path: str) -> Path:
    """``path`` (relative to ``root``) resolved, or PermissionError if it leaves ``root``."""
    if Path(path).is_absolute():
        raise PermissionError(f"{path!r}: absolute paths are not allowed; use a relative path")
    if ".." in Path(path).parts:
        raise PermissionError(f"{path!r}: '..' is not allowed; use a path inside the directory")
    # resolve() follows symlinks, so a link pointing outside ends up outside
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise PermissionError(f"{path!r} points outside the working directory")
    return target


def _read_file(root: Path) -> Callable[..., str]:
    def read_file(path: str) -> str:
        """Read a UTF-8 text file in the working directory (path relative to it). Files
        over 100 KB are cut off with a note."""
        target = confined(root, path)
        if not target.is_file():
            raise FileNotFoundError(f"{path!r} is not a file")
        size = target.stat().st_size
        with target.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES)
        truncated = size > len(data)
        if b"\0" in data[:8192]:
            raise ValueError(f"{path!r} is a binary file")
        try:
            # an incremental decoder tolerates a character cut in half at the cap
            text = codecs.getincrementaldecoder("utf-8")().decode(data, final=not truncated)
        except UnicodeDecodeError:
            raise ValueError(f"{path!r} is not UTF-8 text") from None
        if truncated:
            text += f"\n[truncated: the file has {size} bytes, shown: the first {len(data)}]"
        return text

    return read_file


def _list_dir(root: Path) -> Callable[..., str]:
    def list_dir(path: str = ".") -> str:
        """List a directory in the working directory (path relative to it): one entry a
        line, directories end with '/'."""
        target = confined(root, path)
        if not target.is_dir():
            raise NotADirectoryError(f"{path!r} is not a directory")
        entries = sorted(target.iterdir(), key=lambda p: p.name)
        lines = [p.name + ("/" if p.is_dir() else "") for p in entries[:MAX_DIR_ENTRIES]]
        if len(entries) > MAX_DIR_ENTRIES:
            lines.append(f"[{len(entries) - MAX_DIR_ENTRIES} more entries not shown]")
        return "\n".join(lines) or "(empty directory)"

    return list_dir


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would also follow a redirect to ftp://; we only fetch http(s)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str):  # type: ignore[no-untyped-def]  # urllib's own signature
        _check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpOnlyRedirects)


def _check_url(url: str) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{url!r}: only http:// and https:// URLs can be fetched")


def http_get(url: str) -> str:
    """Fetch a URL with HTTP GET; returns the status line and the body text (first 100 KB)."""
    _check_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": "loopengt-http-get"})
    try:
        response = _opener.open(request, timeout=HTTP_TIMEOUT_SECONDS)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:  # a redirect urllib refused to follow (e.g. to file://)
            raise ValueError(f"{url}: {exc.reason}") from None
        response = exc  # 4xx/5xx: the model still gets the status and body
    except urllib.error.URLError as exc:
        raise ConnectionError(f"{url}: {exc.reason}") from None
    with response:
        status, reason = response.status, response.reason
        charset = response.headers.get_content_charset() or "utf-8"
        data = response.read(MAX_HTTP_BYTES + 1)
    text = data[:MAX_HTTP_BYTES].decode(charset, errors="replace")
    if len(data) > MAX_HTTP_BYTES:
        text += f"\n[truncated after {MAX_HTTP_BYTES} bytes]"
    return f"HTTP {status} {reason}\n\n{text}"
