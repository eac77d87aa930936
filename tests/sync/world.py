"""Central in this process for the sync tests: its clock and HQ's admin API."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette asks for `httpx2`; httpx is what we use
    from fastapi.testclient import TestClient

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class WorldClock:
    """Central's clock: real time of the simulated world."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Admin:
    """HQ's admin API through the in-process client, shaped like `agent._fleet.Central`."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.client.request(method, f"/admin{path}", json=body, headers=self.headers)
        assert answer.status_code < 300, answer.text
        return answer.json()
