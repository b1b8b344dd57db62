"""Fixtures shared across test folders."""

# postgres_server (session) and postgres_url (a fresh database per test)
pytest_plugins = ["tests.support.postgres"]
