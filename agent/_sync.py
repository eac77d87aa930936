"""The sync client: pushes the outbox, pulls central's changes, asks for online holds.

Every call has an explicit timeout and an injectable httpx transport, so tests run it against
central's ASGI app in-process or through a fault proxy on loopback with the same code. Pages
of a pull are applied in short transactions of their own, so the POS never waits long on one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import httpx
import pydantic_core
import sqlite_utils
from pydantic import TypeAdapter

from agent import _outbox
from agent._cache import (
    erase_customer,
    put_balances,
    put_offline_limits,
    put_profile,
    put_rule_set,
    utc_iso,
)
from agent._clock import Clock
from agent._config import AgentSettings
from agent._errors import HoldRefused
from agent._runtime import CHAIN_FILE, PHONE_KEY_FILE
from agent._sales import Till
from agent._store import set_meta
from protocol import (
    BalanceChange,
    Change,
    EnrollRequest,
    EnrollResponse,
    HoldRequest,
    HoldResponse,
    PullResponse,
    PushItem,
    PushRequest,
    PushResponse,
    SnapshotPage,
)
from protocol._sync import pull_page_changes_max

log = logging.getLogger("kopilka.agent.sync")
CREDENTIAL_FILE = "device.json"
push_batches_per_sync_max = 200
pull_pages_per_sync_max = 500
parse_slice_changes_max = 100
"""Changes validated in one call when the sync runs in the POS API's process (`sync_runs_in =
"thread"`): pydantic holds the GIL for a whole call, and the API's threads wait for it; a page
of 1,000 at once held it about 7 ms, a slice of 100 under 1 ms. The sync process parses a page
in one call, about twice as fast (no Python objects in between)."""
backoff_s_min = 0.5


_JSON = {"content-type": "application/json"}


_change_slice = TypeAdapter(tuple[Change, ...])
Page = TypeVar("Page", PullResponse, SnapshotPage)


def parse_page(model: type[Page], raw: bytes, slice_changes: int | None = None) -> Page:
    """A pull or snapshot page validated as `model.model_validate_json` does; with
    `slice_changes`, its changes that many at a time, so other threads get the GIL between."""
    if slice_changes is None:
        return model.model_validate_json(raw)
    try:
        body = pydantic_core.from_json(raw)
    except ValueError:
        body = None
    changes = body.get("changes") if isinstance(body, dict) else None
    if not isinstance(changes, list) or len(changes) > pull_page_changes_max:
        return model.model_validate_json(raw)  # not a page: pydantic says why
    parsed: list[Change] = []
    for first in range(0, len(changes), slice_changes):
        parsed.extend(_change_slice.validate_python(changes[first : first + slice_changes]))
    return model.model_validate({**body, "changes": parsed})


class SyncError(RuntimeError):
    """Central refused or could not be reached; the message says which, in words."""


@dataclass(frozen=True)
class Credential:
    central_url: str
    device_id: str
    epoch: int
    secret: str


def load_credential(data_dir: Path) -> Credential | None:
    path = data_dir / CREDENTIAL_FILE
    if not path.exists():
        return None
    return Credential(**json.loads(path.read_text()))


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def enroll(
    till: Till,
    data_dir: Path,
    central_url: str,
    code: str,
    transport: httpx.BaseTransport | None = None,
    timeout_s: float = 10.0,
    restored: bool = False,
) -> EnrollResponse:
    """Exchange HQ's one-time code for this till's credential; keeps the till's own id.

    `restored`: the till's database came back from a backup (or the till was reinstalled over
    its old data), so central may hold records this copy never made under the same seqs.
    Central gives the device its next epoch, and the till numbers every new record in it."""
    request = EnrollRequest(
        code=code,
        hostname=os.uname().nodename,
        previous_device_id=till.seat.device_id if restored else None,
        device_id=None if restored else till.seat.device_id,
        device_epoch=None if restored else till.seat.epoch,
    )
    with httpx.Client(base_url=central_url, transport=transport, timeout=timeout_s) as client:
        answer = client.post("/sync/enroll", content=request.model_dump_json(), headers=_JSON)
    if answer.status_code != 200:
        raise SyncError(f"enrollment refused: {_reason(answer)}")
    enrolled = EnrollResponse.model_validate_json(answer.content)
    _check_identity(till, enrolled, restored)
    if restored:
        till.seat = _outbox.begin_epoch(till.store, till.seat, enrolled.device_epoch)
    credential = Credential(central_url, enrolled.device_id, enrolled.device_epoch, enrolled.secret)
    _write_private(data_dir / CREDENTIAL_FILE, json.dumps(credential.__dict__))
    _write_private(data_dir / PHONE_KEY_FILE, enrolled.phone_hash_key_hex)
    chain = {
        "store": enrolled.store.model_dump(mode="json"),
        "card_ranges": [r.model_dump(mode="json") for r in enrolled.card_ranges],
    }
    _write_private(data_dir / CHAIN_FILE, json.dumps(chain, ensure_ascii=False))
    return enrolled


def _check_identity(till: Till, enrolled: EnrollResponse, restored: bool) -> None:
    """A till never renumbers records it made: central must answer with this till's id and
    epoch, or, for a restored till, its id and a later epoch."""
    same_id = enrolled.device_id == till.seat.device_id
    if restored and same_id and enrolled.device_epoch > till.seat.epoch:
        return
    if not restored and same_id and enrolled.device_epoch == till.seat.epoch:
        return
    raise SyncError(
        f"central gave id {enrolled.device_id}/{enrolled.device_epoch}, but this till "
        f"writes as {till.seat.device_id}/{till.seat.epoch}"
    )


def enroll_cli(settings: AgentSettings, central_url: str, code: str, restored: bool = False) -> int:
    from agent._runtime import build_till

    till = build_till(settings)
    try:
        enrolled = enroll(
            till,
            settings.data_dir,
            central_url,
            code,
            timeout_s=settings.http_timeout_s,
            restored=restored,
        )
    except (SyncError, httpx.HTTPError) as error:
        print(f"kopilka-agent: {error}")
        return 1
    print(
        f"enrolled as {enrolled.device_id} (epoch {enrolled.device_epoch}) in {enrolled.store.name}"
    )
    return 0


def _reason(answer: httpx.Response) -> str:
    try:
        body = answer.json()
        return f"{body.get('message')} [{body.get('code')}, HTTP {answer.status_code}]"
    except ValueError:
        return f"HTTP {answer.status_code}"


@dataclass
class SyncReport:
    pushed: int = 0
    pulled: int = 0
    quarantined: int = 0


class SyncClient:
    """One till's link to central. `sync_once()` is what the scheduled job runs."""

    def __init__(
        self,
        till: Till,
        credential: Credential,
        settings: AgentSettings,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        """`transport` swaps the network (a fault proxy, an ASGI app); `client` swaps the
        whole HTTP client (Starlette's TestClient over central's app, in tests)."""
        self.till = till
        self.credential = credential
        self.settings = settings
        self.rng = rng or random.Random()
        self.failures = 0
        self.next_attempt_s = 0.0
        self.client = client or httpx.Client(
            base_url=credential.central_url,
            transport=transport,
            timeout=httpx.Timeout(settings.http_timeout_s),
        )
        self.client.headers["Authorization"] = f"Bearer {credential.secret}"
        self.parse_slice = parse_slice_changes_max if settings.sync_runs_in == "thread" else None
        """Changes parsed per call: in slices only beside the POS API's threads."""

    @property
    def clock(self) -> Clock:
        return self.till.clock

    def close(self) -> None:
        self.client.close()

    # --- the scheduled job -----------------------------------------------------------------

    def tick(self) -> SyncReport | None:
        """Sync unless backing off after failures; never raises."""
        now = self.clock.boottime_s()
        if now < self.next_attempt_s:
            return None
        try:
            report = self.sync_once()
        except (SyncError, httpx.HTTPError, ValueError, sqlite3.Error) as error:
            # ValueError: an answer that does not parse (ValidationError, JSON); sqlite3: the
            # till's own disk (full, locked past busy_timeout) while it applies a page
            self._failed(str(error) or error.__class__.__name__, now)
            return None
        self.failures = 0
        self.next_attempt_s = 0.0
        return report

    def _failed(self, problem: str, now: float) -> None:
        self.failures += 1
        ceiling = min(self.settings.sync_backoff_s_max, backoff_s_min * 2 ** min(self.failures, 16))
        self.next_attempt_s = now + self.rng.uniform(ceiling / 2, ceiling)
        log.warning("sync failed (%d in a row): %s", self.failures, problem)
        try:
            with self.till.store.write() as db:
                set_meta(db, "online", "0")
                set_meta(db, "last_sync_error", problem[:300])
        except sqlite3.Error as error:  # a full disk: the log says it, the next turn again
            log.warning("sync status not written: %s", error)

    def sync_once(self) -> SyncReport:
        report = SyncReport()
        try:
            self.push_all(report)
        except SyncError:
            # central answered and refused a batch (a conflict for HQ, a balance out of
            # range): the pull still keeps the data fresh, and the offline allowance with it;
            # the push's refusal stays the sync's error whatever the pull meets
            with contextlib.suppress(SyncError, httpx.HTTPError, ValueError, sqlite3.Error):
                self.pull_all(report)
            raise
        self.pull_all(report)
        with self.till.store.write() as db:
            set_meta(db, "online", "1")
            set_meta(db, "last_sync_error", "")
        return report

    # --- push -----------------------------------------------------------------------------

    def push_all(self, report: SyncReport) -> None:
        for _ in range(push_batches_per_sync_max):
            with self.till.store.read() as db:
                batch = _outbox.pending(db, self.settings.sync_batch_entries_max)
            if not batch:
                return
            self._push(batch, report)

    def _push(self, batch: list[_outbox.PendingRecord], report: SyncReport) -> None:
        epoch = batch[0].epoch
        request = PushRequest(
            device_id=self.credential.device_id,
            device_epoch=epoch,
            items=tuple(
                PushItem(seq=r.seq, payload=r.payload, payload_sha256=r.payload_sha256)
                for r in batch
            ),
            device_time=self.clock.wall(),
        )
        answer = self.client.post(
            "/sync/push",
            content=request.model_dump_json(),
            headers=_JSON,
        )
        if answer.status_code == 409:
            self._refused(answer, epoch, batch)
            return
        if answer.status_code != 200:
            raise SyncError(f"push refused: {_reason(answer)}")
        done = PushResponse.model_validate_json(answer.content)
        sent = {record.seq for record in batch}
        if done.acked_through != batch[-1].seq or not {r.seq for r in done.results} <= sent:
            raise SyncError(  # never mark a record central did not say it holds, nor one not sent
                f"central's answer does not match the batch sent (seqs {batch[0].seq}-"
                f"{batch[-1].seq}): acknowledged through {done.acked_through}"
            )
        with self.till.store.write() as db:
            _outbox.acknowledge(db, epoch, done.acked_through, done.change_seq)
            _outbox.balance_watermarks(db, done.balance_seqs)
            for result in done.results:
                if result.outcome == "quarantined":
                    _outbox.quarantine(db, epoch, result.seq)
                    report.quarantined += 1
            set_meta(db, "last_push_at", utc_iso(self.clock.wall()))
        report.pushed += len(done.results)

    def _refused(
        self, answer: httpx.Response, epoch: int, batch: list[_outbox.PendingRecord]
    ) -> None:
        try:
            body = answer.json()
        except ValueError:
            raise SyncError(f"push refused: {_reason(answer)}") from None
        expected = (body.get("details") or {}).get("expected_seq")
        if body.get("code") != "gap" or not isinstance(expected, int):
            raise SyncError(f"push refused: {_reason(answer)}")
        # central already holds what we sent before its reply was lost: acknowledge it (never
        # past this batch: central cannot hold what was not sent)
        if batch[0].seq < expected <= batch[-1].seq + 1:
            with self.till.store.write() as db:
                _outbox.acknowledge(db, epoch, expected - 1, None)
            return
        # central lost records it had acknowledged (restored from a backup): send them again
        if 1 <= expected < batch[0].seq:
            with self.till.store.write() as db:
                again = _outbox.send_again(db, epoch, expected)
            if again == 0:  # nothing of that to send: pushing the same batch would loop
                raise SyncError(f"push refused: {_reason(answer)}")
            log.warning(
                "central no longer holds epoch %d's records from seq %d, which it had "
                "acknowledged (restored from a backup?): sending %d records again",
                epoch,
                expected,
                again,
            )
            return
        raise SyncError(f"push refused: {_reason(answer)}")

    # --- pull -----------------------------------------------------------------------------

    def pull_all(self, report: SyncReport) -> None:
        """Pages from the cursor until central has no more, applied one after another in
        order. The next page is fetched while this one is applied, so central serving and
        the till applying overlap. Only a pull that reached central's last change makes the
        data fresh again, as of when it began (a page, or a snapshot, cut short by the
        network leaves the data as old as it was: the offline allowance goes by that age)."""
        began_s = self.clock.boottime_s()
        with ThreadPoolExecutor(1, thread_name_prefix="pull-ahead") as ahead:
            fetched: Future[httpx.Response] | None = None
            for _ in range(pull_pages_per_sync_max):
                if fetched is None:
                    cursor = int(self.till.store.meta("pull_cursor", "0") or 0)
                    answer = self._fetch(cursor)
                else:
                    answer = fetched.result()
                    fetched = None
                if answer.status_code == 410:
                    self.snapshot(report)
                    continue
                if answer.status_code != 200:
                    raise SyncError(f"pull refused: {_reason(answer)}")
                page = parse_page(PullResponse, answer.content, self.parse_slice)
                if page.more:
                    fetched = ahead.submit(self._fetch, page.next_cursor)
                fresh = None if page.more else (page.server_time, began_s)
                self._apply(page.changes, page.next_cursor, fresh)
                report.pulled += len(page.changes)
                if not page.more:
                    with self.till.store.write() as db:
                        _outbox.settle_watermarks(db, page.next_cursor)
                    return

    def _fetch(self, cursor: int) -> httpx.Response:
        """One page after `cursor`."""
        return self.client.get(
            "/sync/pull", params={"since": cursor, "limit": pull_page_changes_max}
        )

    def snapshot(self, report: SyncReport) -> None:
        """Central no longer has our cursor's changes: read its whole state, page by page.
        The outbox is untouched; its entries still count in the balance view."""
        token: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": pull_page_changes_max}
            if token is not None:
                params["page"] = token
            answer = self.client.get("/sync/snapshot", params=params)
            if answer.status_code != 200:
                raise SyncError(f"snapshot refused: {_reason(answer)}")
            page = parse_page(SnapshotPage, answer.content, self.parse_slice)
            last = page.next_page is None
            cursor = page.as_of if last else None
            self._apply(page.changes, cursor, None)  # the pull from `as_of` on makes it fresh
            report.pulled += len(page.changes)
            if last:
                return
            token = page.next_page

    def _apply(
        self,
        changes: tuple[Change, ...],
        cursor: int | None,
        fresh: tuple[datetime, float] | None,
    ) -> None:
        """One page in one write; with `fresh` (central's time, and the boot clock when the
        pull began), the pull is whole: the data is as fresh as that."""
        with self.till.store.write() as db:
            apply_changes(db, changes)
            if cursor is not None:
                set_meta(db, "pull_cursor", str(cursor))
            if fresh is not None:
                server_time, began_s = fresh
                set_meta(db, "last_pull_at", utc_iso(self.clock.wall()))
                set_meta(db, "last_pull_server_time", utc_iso(server_time))
                set_meta(db, "last_pull_boot_id", self.clock.boot_id())
                set_meta(db, "last_pull_boottime_s", repr(began_s))

    # --- holds ----------------------------------------------------------------------------

    def hold(self, request: HoldRequest) -> HoldResponse | None:
        """A hold at central within `hold_timeout_s`; None when central did not answer in time
        (the till then applies its offline allowance). An answer from central ends the sync
        job's backoff: a till back from days offline would otherwise wait up to
        `sync_backoff_s_max` before it notices."""
        try:
            answer = self.client.post(
                "/sync/holds",
                content=request.model_dump_json(),
                headers=_JSON,
                timeout=self.settings.hold_timeout_s,
            )
        except httpx.HTTPError:
            return None
        if answer.status_code in (401, 404) or answer.status_code >= 500:
            return None  # no credential there, no holds at this central, or it is unwell
        try:  # not central's answer (a proxy's page) is as if none came
            parsed = _hold_answer(answer)
        except ValueError:
            return None
        self.next_attempt_s = 0.0  # central is back: the next tick syncs, backoff or not
        # an explicit no (not enough points, a confirmation code needed or wrong, customer
        # blocked): spend nothing rather than fall back to the offline allowance
        if isinstance(parsed, HoldRefused):
            raise parsed
        return parsed


def _hold_answer(answer: httpx.Response) -> HoldResponse | HoldRefused:
    """Central's yes, or its no; ValueError for a body that is neither."""
    if answer.status_code == 200:
        return HoldResponse.model_validate_json(answer.content)
    body = answer.json()
    if not isinstance(body, dict) or "code" not in body:
        raise ValueError(f"not an answer of central's: HTTP {answer.status_code}")
    return HoldRefused(str(body.get("code")), str(body.get("message")))


def apply_change(db: sqlite_utils.Database, change: Change) -> None:
    """One change from central into the till's cache (inside the caller's transaction)."""
    if change.type == "customer":
        put_profile(db, change.state, change.identifiers, change.first_name, change.change_seq)
    elif change.type == "erasure":
        erase_customer(db, change.customer_id, change.identifiers)
    elif change.type == "rule_set":
        put_rule_set(
            db, change.rule_set_id, change.content_hash, change.effective_from, change.document
        )
    elif change.type == "offline_limits":
        put_offline_limits(db, change.limits)
    elif change.type == "balance" and change.account.type == "customer":
        put_balances(db, (change,))


def apply_changes(db: sqlite_utils.Database, changes: tuple[Change, ...]) -> None:
    """A page of changes, in order. A balance change carries the whole balance of one asset,
    so of a run of them only the last per customer and asset is written (a page often moves
    one customer many times); the run is written before any other kind of change."""
    latest: dict[tuple[str, str], BalanceChange] = {}
    for change in changes:
        if change.type != "balance":
            put_balances(db, latest.values())
            latest = {}
            apply_change(db, change)
        elif change.account.type == "customer":
            latest[(change.account.customer_id, change.asset)] = change
    put_balances(db, latest.values())
