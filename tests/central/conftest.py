"""Central's fixtures: every test runs on SQLite and on PostgreSQL (a database of its own)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

with warnings.catch_warnings():
    # Starlette 1.x asks for `httpx2` in its test client; httpx is what the project uses.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from central import create_app, make_engine, migrate
from central._clock import to_ms
from central._directory import issue_admin_token

from .tills import Hq


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/central.db"
    url: str = request.getfixturevalue("postgres_url")
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(engine: sa.Engine, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(engine=engine, clock=clock)) as test_client:
        yield test_client


@pytest.fixture
def admin_token(engine: sa.Engine, clock: FakeClock) -> str:
    with engine.begin() as conn:
        return issue_admin_token(conn, "tests", to_ms(clock()))


@pytest.fixture
def hq(client: TestClient, admin_token: str) -> Hq:
    return Hq(client, admin_token)
