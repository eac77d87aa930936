"""Test helpers: HQ's admin calls and a till that numbers its outbox like the agent does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from protocol import (
    CustomerAccount,
    EnrollResponse,
    EntryKind,
    LedgerEntry,
    PullResponse,
    PushItem,
    PushRequest,
    canonical_json,
    new_entry_id,
    sha256_hex,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class Hq:
    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def post(self, path: str, body: Any = None) -> Any:
        response = self.client.post(path, json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def store(self, store_id: str = "s1") -> None:
        self.post("/admin/stores", {"store_id": store_id, "name": f"Store {store_id}"})

    def customer(self, customer_id: str, **extra: Any) -> None:
        self.post("/admin/customers", {"customer_id": customer_id, **extra})

    def enroll(self, store_id: str = "s1", **extra: Any) -> Till:
        self.store(store_id)
        code = self.post(f"/admin/stores/{store_id}/enrollment-codes")["code"]
        response = self.client.post("/sync/enroll", json={"code": code, **extra})
        assert response.status_code == 200, response.text
        return Till(self.client, EnrollResponse.model_validate(response.json()))


@dataclass
class Till:
    client: Any
    enrolled: EnrollResponse
    next_seq: int = 1
    outbox: list[PushItem] = field(default_factory=list)

    @property
    def device_id(self) -> str:
        return self.enrolled.device_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.enrolled.secret}"}

    def entry(
        self,
        customer_id: str,
        amount: int,
        kind: EntryKind = EntryKind.earn,
        **extra: Any,
    ) -> PushItem:
        record = LedgerEntry(
            entry_id=extra.pop("entry_id", None) or new_entry_id(),
            device_id=self.device_id,
            device_epoch=self.enrolled.device_epoch,
            device_seq=self.next_seq,
            kind=kind,
            account=extra.pop("account", None) or CustomerAccount(customer_id=customer_id),
            amount=amount,
            device_time=extra.pop("device_time", NOW),
            **extra,
        )
        return self.store_record(canonical_json(record))

    def store_record(self, payload: bytes) -> PushItem:
        item = PushItem(
            seq=self.next_seq, payload=payload.decode("utf-8"), payload_sha256=sha256_hex(payload)
        )
        self.next_seq += 1
        self.outbox.append(item)
        return item

    def body(self, items: list[PushItem] | tuple[PushItem, ...]) -> dict[str, Any]:
        request = PushRequest(
            device_id=self.device_id,
            device_epoch=self.enrolled.device_epoch,
            items=tuple(items),
            device_time=NOW,
        )
        return request.model_dump(mode="json")

    def push(self, items: list[PushItem] | tuple[PushItem, ...]) -> httpx.Response:
        response: httpx.Response = self.client.post(
            "/sync/push", json=self.body(items), headers=self.headers
        )
        return response

    def pull(self, since: int, limit: int = 500) -> httpx.Response:
        """A page of changes; a page central serves must parse as a till parses it."""
        response: httpx.Response = self.client.get(
            "/sync/pull", params={"since": since, "limit": limit}, headers=self.headers
        )
        if response.status_code == 200:
            PullResponse.model_validate_json(response.content)
        return response


def random_id() -> str:
    return uuid.uuid4().hex[:12]
