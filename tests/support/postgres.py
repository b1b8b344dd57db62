"""A real PostgreSQL server for tests, and a fresh database for each test.

`LOOPENGT_TEST_POSTGRES_URL` (a ``postgresql://`` URL to a server where the user may
``CREATE DATABASE``) is used when set. Otherwise a throwaway server is started from the
binaries of Debian's ``postgresql`` package: ``initdb`` into a temporary directory, then
``pg_ctl start`` listening on 127.0.0.1 and a free port only, trust auth, no fsync. Running
as root, both run as the ``postgres`` user (PostgreSQL refuses to run as root). The server
is stopped and its directory removed at the end of the session.

When neither works the tests are skipped with the reason — unless `LOOPENGT_REQUIRE_POSTGRES`
is set (CI sets it), in which case they fail: CI must really test against PostgreSQL.

Fixtures: ``postgres_server`` (session) and ``postgres_url`` (a new database per test).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

URL_ENV = "LOOPENGT_TEST_POSTGRES_URL"
REQUIRE_ENV = "LOOPENGT_REQUIRE_POSTGRES"
NO_SERVER = (
    "no PostgreSQL server: install Debian's postgresql package or set LOOPENGT_TEST_POSTGRES_URL"
)
START_TIMEOUT_S = 30
# Debian keeps the server binaries out of PATH, one directory per major version
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# throughput over durability: the cluster is thrown away after the session
FAST_SETTINGS = ("fsync = off", "synchronous_commit = off", "full_page_writes = off")


class NoServer(Exception):
    """Why a local server could not be started (becomes the skip reason)."""


@dataclass
class PostgresServer:
    """A server the tests may create databases on; ``url`` names its maintenance database."""

    url: str

    def database_url(self, name: str) -> str:
        return urlunsplit(urlsplit(self.url)._replace(path="/" + name))

    def create_database(self) -> str:
        name = f"loopengt_test_{uuid.uuid4().hex[:12]}"
        with _admin(self.url) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with _admin(self.url) as conn:
            # FORCE (PostgreSQL 13+) ends connections a killed test process may have left
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _admin(url: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        yield conn


def server_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, then Debian's newest version."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    found = [p for p in Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")) if (p / "initdb").is_file()]

    def major(path: Path) -> int:
        version = path.parent.name
        return int(version) if version.isdigit() else 0

    return max(found, key=major) if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayServer:
    """initdb + pg_ctl in a temporary directory, on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.bin = server_binaries()
        if self.bin is None:
            raise NoServer(NO_SERVER)
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise NoServer(f"{NO_SERVER} (running as root and no 'postgres' user)") from None
            self.user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self.dir = Path(tempfile.mkdtemp(prefix="loopengt-pg-"))
        if self.user:
            os.chown(self.dir, self.user["user"], self.user["group"])
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.started = False

    def _run(self, *args: str | Path) -> None:
        result = subprocess.run(
            [str(a) for a in args],
            cwd=self.dir,  # the postgres user must be able to enter the working directory
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            **self.user,
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise NoServer(f"{Path(args[0]).name} failed: {' / '.join(tail)}")

    def start(self) -> str:
        assert self.bin is not None
        self._run(
            self.bin / "initdb",
            *("-D", self.data, "-U", "postgres", "--auth=trust"),
            *("--encoding=UTF8", "--locale=C", "--no-sync"),
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            # the socket lives in our directory: /var/run/postgresql may not exist or be shared
            f"unix_socket_directories = '{self.dir}'",
            *FAST_SETTINGS,
        ]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        for attempt in range(3):  # another process may take the free port before we bind it
            self.port = _free_port()
            try:
                self._run(
                    self.bin / "pg_ctl",
                    *("-D", self.data, "-l", self.log, "-w", "-t", str(START_TIMEOUT_S)),
                    *("-o", f"-p {self.port}", "start"),
                )
                break
            except NoServer as exc:
                if attempt == 2 or "could not bind" not in self._log_text():
                    raise NoServer(f"{exc}; server log: {self._log_tail()}") from None
        self.started = True
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            if self.started and self.bin is not None:
                self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def _log_tail(self) -> str:
        return " / ".join(self._log_text().strip().splitlines()[-3:]) or "(empty)"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so PostgreSQL tests may not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get(URL_ENV)
    if url:
        if not re.match(r"postgres(ql)?://", url):
            pytest.fail(f"{URL_ENV} must be a postgresql:// URL, got {url!r}")
        yield PostgresServer(url)
        return
    server: ThrowawayServer | None = None
    try:
        server = ThrowawayServer()
        url = server.start()
    except NoServer as exc:
        if server is not None:
            server.stop()
        _unavailable(str(exc))
    except (OSError, subprocess.SubprocessError) as exc:
        if server is not None:
            server.stop()
        _unavailable(f"{NO_SERVER} ({type(exc).__name__}: {exc})")
    assert server is not None and url
    try:
        yield PostgresServer(url)
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A ``postgresql://`` URL to a new, empty database, dropped after the test."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.database_url(name)
    finally:
        postgres_server.drop_database(name)
