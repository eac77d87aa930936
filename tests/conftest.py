"""Fixtures shared by the whole suite: PostgreSQL availability and fresh databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "KOPILKA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("KOPILKA_REQUIRE_POSTGRES") == "1"


def _postgres_problem() -> str | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as error:  # noqa: BLE001 - any failure means "not available"
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} does not answer: {error}"
    return None


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The server's admin URL; skips (or fails under KOPILKA_REQUIRE_POSTGRES=1) without it."""
    problem = _postgres_problem()
    if problem is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{problem} (KOPILKA_REQUIRE_POSTGRES=1 forbids skipping)")
        pytest.skip(problem)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A database of its own for one test, dropped afterwards."""
    import psycopg

    name = f"kopilka_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    base = postgres_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
