"""Fixtures shared across test folders."""

import os

from loopengt.graph.state import CHECK_WRITES_ENV

# every node update in every test (and the CLI subprocesses they start) is checked against
# its graph's channels: LangGraph would drop an unknown key silently
os.environ[CHECK_WRITES_ENV] = "1"

# postgres_server (session) and postgres_url (a fresh database per test)
pytest_plugins = ["tests.support.postgres"]
