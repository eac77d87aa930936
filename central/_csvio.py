"""CSV import of an existing customer base (with balances and purchase history) and CSV
export of customers, balances and the ledger.

Import reads the file as a stream, a batch of rows at a time. Each batch is one transaction
and every row in it is checked before anything is written (fields, duplicates in the file,
identifiers owned by someone else), so a row is imported whole or not at all; the report
names every rejected row by its line number with the reason. Every entry an import writes
carries a stable key in `grants` (`import_key`: `import:<customer>` for the opening balance,
`import:<customer>:<purchase>` for history), and a customer already present with the same
data is left alone, so running the same file again changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError

from central import _changes, _directory, _entries
from central import _tables as t
from central._clock import to_ms
from protocol import (
    CardIdentifier,
    CustomerState,
    EntryKind,
    IdentifierRejected,
    PhoneHasher,
    normalize_phone,
)
from protocol._base import Id, id_chars_max, points_max

import_batch_rows = 1000
rejected_listed_max = 10_000
CUSTOMER_COLUMNS = (
    "customer_id",
    "first_name",
    "phone",
    "card",
    "birthday",
    "tier",
    "language",
    "consent_marketing",
    "consent_data",
    "points",
    "points_expire_at",
)
ALIASES = {"name": "first_name", "balance": "points"}
"""Other names a column may have in the file (the example base says `name`)."""
HISTORY_COLUMNS = ("customer_id", "purchase_id", "purchased_at", "total_kopecks")
_id = TypeAdapter(Id)
_TRUE = {"1", "true", "yes", "y", "да"}
_FALSE = {"0", "false", "no", "n", "нет", ""}
import_key_digest_hex = 48
"""Hex digits of SHA-256 in a key too long to spell out: 192 bits, and 62 characters."""


def import_key(customer_id: str, purchase_id: str | None = None) -> str:
    """The grant key of an imported entry, the same on every run (so a second run finds it
    and adds nothing): `import:<customer>` for the opening balance,
    `import:<customer>:<purchase>` for a purchase. Where that would be longer than a key may
    be (64 characters; an id alone may have 64) or could be read two ways (a customer id
    holding `:`, the separator), `import-sha256:` and the start of the SHA-256 of the ids
    joined by `/`, which no id holds: different ids, different keys."""
    ids = [customer_id] if purchase_id is None else [customer_id, purchase_id]
    spelled = ":".join(["import", *ids])
    if len(spelled) <= id_chars_max and ":" not in customer_id:
        return spelled
    digest = hashlib.sha256("/".join(ids).encode()).hexdigest()
    return f"import-sha256:{digest[:import_key_digest_hex]}"


class BadRow(ValueError):
    pass


@dataclass
class Report:
    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    entries: int = 0
    rejected_count: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    """Why the file was not read to its end, when it was not (`Unreadable`)."""

    def reject(self, line: int, key: str, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < rejected_listed_max:
            self.rejected.append({"line": line, "customer_id": key, "reason": reason})


class Unreadable(ValueError):
    """The file cannot be read on from here (not UTF-8, a quote never closed, a field past
    the CSV reader's limit): the rows before it are imported, the rest are not read."""


def utf8_lines(raw: Iterable[bytes]) -> Iterator[str]:
    """The lines of a UTF-8 file (ended by LF or CRLF, or by a lone CR in a file with no LF
    at all, as old Mac spreadsheets write them; a BOM before the first is dropped), each
    decoded alone: bytes that are not UTF-8 stop the file at their line, not at the chunk
    around it. A stray CR in a file of LF lines stays in its line, for the CSV reader to
    refuse."""
    number = 0
    cr_lines: bool | None = None
    for chunk in raw:
        if cr_lines is None:  # the first line read: the whole file, if it holds no LF
            cr_lines = not chunk.endswith(b"\n")
        for line in chunk.splitlines(keepends=True) if cr_lines else (chunk,):
            number += 1
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise Unreadable(f"line {number} is not UTF-8") from None
            yield text.removeprefix("\ufeff") if number == 1 else text


def _rows(lines: Iterable[str], columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(lines, strict=True)
    header = tuple(ALIASES.get(name, name) for name in _header(reader))
    reader.fieldnames = list(header)
    missing = [c for c in ("customer_id",) if c not in header]
    unknown = [c for c in header if c not in columns]
    twice = sorted({c for c in header if header.count(c) > 1})
    if missing or unknown:
        raise BadRow(f"header must name columns from {list(columns)}; bad: {missing + unknown}")
    if twice:
        raise BadRow(f"header names a column twice: {twice}")
    read = reader.line_num  # the lines of the rows read so far (the header's)
    while True:
        try:
            row = next(reader, None)
        except csv.Error as error:  # the reader's line count stops short: ours is right
            raise Unreadable(f"the row from line {read + 1} on: {error}") from None
        if row is None:
            return
        read = reader.line_num
        extra = row.pop(None, None)
        if extra:
            row["__extra__"] = "x"
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items()}


def _header(reader: csv.DictReader[str]) -> list[str]:
    try:
        return list(reader.fieldnames or ())
    except csv.Error as error:
        raise BadRow(f"the header cannot be read: {error}") from None


def _plain(raw: dict[str, str]) -> dict[str, str]:
    """`raw`, refused when it holds what no field may (a NUL byte: PostgreSQL stores no text
    with one)."""
    if any("\x00" in value for value in raw.values()):
        raise BadRow("a field holds a NUL byte")
    return raw


def _bool(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadRow(f"{name} must be yes or no, got {text!r}")


def _int(text: str, name: str) -> int:
    """A whole number that fits one entry's amount (`points_max`)."""
    if text == "":
        return 0
    if not (text.isascii() and text.isdigit()):
        raise BadRow(f"{name} must be a whole number ≥ 0, got {text!r}")
    value = int(text)
    if value > points_max:
        raise BadRow(f"{name} must be at most {points_max}, got {text}")
    return value


def _moment(text: str, name: str) -> datetime | None:
    if text == "":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRow(f"{name} must be an ISO date or time, got {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _customer(row: dict[str, str], hasher: PhoneHasher) -> dict[str, Any]:
    if "__extra__" in row:
        raise BadRow("more fields than the header names")
    try:
        customer_id = _id.validate_python(row["customer_id"])
    except ValidationError:
        raise BadRow(f"customer_id {row['customer_id']!r} is not a valid id") from None
    idents: list[tuple[str, str]] = []
    phone = None
    if row.get("phone"):
        try:
            phone = normalize_phone(row["phone"])
        except IdentifierRejected as error:
            raise BadRow(f"phone {row['phone']!r}: {error.reason}") from None
        idents.append(("phone_hash", hasher(phone)))
    if row.get("card"):
        try:
            idents.append(("card", CardIdentifier(number=row["card"]).number))
        except ValidationError:
            raise BadRow(f"card {row['card']!r} is not a card number") from None
    parsed = {
        "customer_id": customer_id,
        "first_name": row.get("first_name", "")[:64],
        "tier": _tier(row.get("tier", "")),
        "birthday": _birthday(row.get("birthday", "")),
        "language": _language(row.get("language", "")),
        "consent_marketing": _bool(row.get("consent_marketing", ""), "consent_marketing"),
        "consent_data": _bool(row.get("consent_data", ""), "consent_data"),
        "points": _int(row.get("points", ""), "points"),
        "expires_at": _moment(row.get("points_expire_at", ""), "points_expire_at"),
        "phone": phone,
        "identifiers": idents,
    }
    _check_readable(parsed)
    return parsed


def _tier(text: str) -> str | None:
    if text == "":
        return None
    try:
        return _id.validate_python(text)
    except ValidationError:
        raise BadRow(f"tier {text!r} is not an id (letters, digits, '.', '_', ':', '-')") from None


def _birthday(text: str) -> str | None:
    """Exactly YYYY-MM-DD, the form tills read (Python also reads 20250101 and 2025-W01-1)."""
    if text == "":
        return None
    try:
        if date.fromisoformat(text).isoformat() == text:
            return text
    except ValueError:
        pass
    raise BadRow(f"birthday {text!r} is not a date (YYYY-MM-DD)")


def _language(text: str) -> str:
    language = text or "ru"
    if len(language) != 2 or not (language.isascii() and language.isalpha()):
        raise BadRow(f"language {language!r} is not a two-letter code")
    if not language.islower():
        raise BadRow(f"language {language!r} is not a two-letter code in lower case")
    return language


def _check_readable(parsed: dict[str, Any]) -> None:
    """The customer as every till will read it: a change a till refuses would stop every
    till's pull at it, so a row that makes one is rejected here (the fields are checked one
    by one above; this keeps them in step with the protocol)."""
    try:
        CustomerState.model_validate(_state(parsed))
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise BadRow(f"{where}: {problem['msg']} (tills could not read this customer)") from None


_SAME = ("first_name", "tier", "birthday", "language", "consent_marketing", "consent_data")


Batch = list[tuple[int, dict[str, Any]]]


def _stream(
    engine: sa.Engine,
    lines: Iterable[str],
    columns: tuple[str, ...],
    parse: Callable[[dict[str, str]], dict[str, Any]],
    write: Callable[[sa.Engine, Batch, datetime, Report], None],
    now: datetime,
) -> Report:
    """Parse rows one by one (a bad row is reported and skipped) and write them a batch at
    a time, each batch one transaction."""
    report = Report()
    batch: Batch = []
    try:
        for line, raw in _rows(lines, columns):
            report.rows += 1
            try:
                parsed = parse(_plain(raw))
            except BadRow as error:
                report.reject(line, raw.get("customer_id", ""), str(error))
                continue
            batch.append((line, parsed))
            if len(batch) >= import_batch_rows:
                write(engine, batch, now, report)
                batch = []
    except Unreadable as error:
        if not report.rows:
            raise BadRow(str(error)) from None
        report.stopped = f"{error}: the rows before it were imported, none after it was read"
    if batch:
        write(engine, batch, now, report)
    report.rejected.sort(key=lambda item: int(item["line"]))
    return report


def import_customers(engine: sa.Engine, lines: Iterable[str], now: datetime) -> Report:
    """Import customers with their opening points balance. See the module's docstring."""
    with engine.connect() as conn:
        key = _directory.setting(conn, "phone_hash_key_hex")
    if key is None:
        raise AssertionError("the chain's phone-hash key is missing; run migrate")
    hasher = PhoneHasher(bytes.fromhex(key))
    seen: set[str] = set()
    seen_idents: set[tuple[str, str]] = set()

    def parse(raw: dict[str, str]) -> dict[str, Any]:
        parsed = _customer(raw, hasher)
        if parsed["customer_id"] in seen:
            raise BadRow(f"customer {parsed['customer_id']} appears twice in the file")
        taken = [i for i in parsed["identifiers"] if i in seen_idents]
        if taken:
            raise BadRow(f"{taken[0][0]} is used by an earlier row of the file")
        seen.add(parsed["customer_id"])
        seen_idents.update(parsed["identifiers"])
        return parsed

    return _stream(engine, lines, CUSTOMER_COLUMNS, parse, _customer_batch, now)


def _customer_batch(engine: sa.Engine, batch: Batch, now: datetime, report: Report) -> None:
    now_ms = to_ms(now)
    ids = [parsed["customer_id"] for _, parsed in batch]
    with engine.begin() as conn:
        existing = {
            row.customer_id: row
            for row in conn.execute(
                sa.select(t.customers).where(t.customers.c.customer_id.in_(ids))
            )
        }
        idents = [i for _, parsed in batch for i in parsed["identifiers"]]
        owners = _owners(conn, idents)
        granted = _entries.keys_taken(conn, [import_key(i) for i in ids])
        fresh: list[dict[str, Any]] = []
        for line, parsed in batch:
            cid = parsed["customer_id"]
            foreign = [i for i in parsed["identifiers"] if owners.get(i, cid) != cid]
            old = existing.get(cid)
            if foreign:
                report.reject(
                    line, cid, f"{foreign[0][0]} belongs to customer {owners[foreign[0]]}"
                )
            elif old is not None and any(getattr(old, f) != parsed[f] for f in _SAME):
                report.reject(line, cid, "customer exists at central with other data")
            elif old is not None and import_key(cid) not in granted and parsed["points"]:
                report.reject(line, cid, "customer exists at central; its balance is not imported")
            elif old is not None:
                report.unchanged += 1
            else:
                fresh.append(parsed)
        if fresh:
            report.entries += _insert_customers(conn, fresh, now, now_ms)
            report.imported += len(fresh)


def _owners(conn: sa.Connection, idents: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    owners: dict[tuple[str, str], str] = {}
    for kind in ("card", "phone_hash"):
        values = [v for k, v in idents if k == kind]
        if values:
            rows = conn.execute(
                sa.select(t.identifiers.c.value, t.identifiers.c.customer_id).where(
                    t.identifiers.c.kind == kind, t.identifiers.c.value.in_(values)
                )
            )
            owners.update({(kind, row.value): row.customer_id for row in rows})
    return owners


def _insert_customers(
    conn: sa.Connection, fresh: list[dict[str, Any]], now: datetime, now_ms: int
) -> int:
    conn.execute(
        sa.insert(t.customers),
        [
            {
                **{f: p[f] for f in (*_SAME, "customer_id")},
                "status": "active",
                "created_ms": now_ms,
                "updated_ms": now_ms,
            }
            for p in fresh
        ],
    )
    idents = [
        {"kind": kind, "value": value, "customer_id": p["customer_id"], "created_ms": now_ms}
        for p in fresh
        for kind, value in p["identifiers"]
    ]
    if idents:
        conn.execute(sa.insert(t.identifiers), idents)
    contacts = [
        {"customer_id": p["customer_id"], "phone_e164": p["phone"]} for p in fresh if p["phone"]
    ]
    if contacts:
        conn.execute(sa.insert(t.contacts), contacts)
    _changes.append(conn, [_customer_body(p) for p in fresh], now_ms)
    specs = [
        {
            "kind": EntryKind.import_,
            "account": _entries.account_of(f"customer:{p['customer_id']}"),
            "amount": p["points"],
            "expires_at": p["expires_at"],
            "grant_key": import_key(p["customer_id"]),
            "reason": "opening balance imported",
        }
        for p in fresh
        if p["points"] > 0
    ]
    return len(_entries.write(conn, specs, now))


def _state(parsed: dict[str, Any]) -> dict[str, Any]:
    state = {
        "customer_id": parsed["customer_id"],
        "status": "active",
        "tier": parsed["tier"],
        "birthday": parsed["birthday"],
        "consent_marketing": parsed["consent_marketing"],
        "consent_data": parsed["consent_data"],
        "language": parsed["language"],
    }
    return {k: v for k, v in state.items() if v is not None}


def _customer_body(parsed: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "customer",
        "state": _state(parsed),
        "identifiers": [
            _changes.account_ref(f"{kind}:{value}") for kind, value in sorted(parsed["identifiers"])
        ],
        "first_name": parsed["first_name"],
    }


def import_history(engine: sa.Engine, lines: Iterable[str], now: datetime) -> Report:
    """Past purchases: each adds to the customer's `purchases` and `rolling_spend` counters,
    keyed by customer and purchase (`import_key`) so a second run adds nothing. Their entries
    are timed when the purchase was made, so the `rolling` job takes out spend older than
    the rule set's window."""
    return _stream(engine, lines, HISTORY_COLUMNS, _purchase, _history_batch, now)


def _purchase(raw: dict[str, str]) -> dict[str, Any]:
    if "__extra__" in raw:
        raise BadRow("more fields than the header names")
    try:
        purchase = _id.validate_python(raw.get("purchase_id", "") or "-")
        customer_id = _id.validate_python(raw["customer_id"])
    except ValidationError:
        raise BadRow("customer_id or purchase_id is not a valid id") from None
    return {
        "customer_id": customer_id,
        "key": import_key(customer_id, purchase),
        "total": _int(raw.get("total_kopecks", ""), "total_kopecks"),
        "at": _moment(raw.get("purchased_at", ""), "purchased_at"),
    }


def _history_batch(engine: sa.Engine, batch: Batch, now: datetime, report: Report) -> None:
    with engine.begin() as conn:
        ids = sorted({p["customer_id"] for _, p in batch})
        known = {
            row.customer_id: row
            for row in conn.execute(
                sa.select(
                    t.customers.c.customer_id, t.customers.c.status, t.customers.c.merged_into
                ).where(t.customers.c.customer_id.in_(ids))
            )
        }
        taken = _entries.keys_taken(conn, [p["key"] for _, p in batch])
        specs: list[dict[str, Any]] = []
        for line, p in batch:
            refused = _history_refused(known.get(p["customer_id"]))
            if refused is not None:
                report.reject(line, p["customer_id"], refused)
            elif p["key"] in taken:
                report.unchanged += 1
            else:
                taken.add(p["key"])
                account = _entries.account_of(f"customer:{p['customer_id']}")
                common = {
                    "kind": EntryKind.import_,
                    "account": account,
                    "reason": "history",
                    "device_time": min(p["at"], now) if p["at"] else now,  # for rolling spend
                }
                specs.append({**common, "asset": "purchases", "amount": 1, "grant_key": p["key"]})
                if p["total"]:
                    specs.append({**common, "asset": "rolling_spend", "amount": p["total"]})
                report.imported += 1
        report.entries += len(_entries.write(conn, specs, now))


def _history_refused(customer: Any) -> str | None:
    """Why a purchase cannot be imported for `customer` (a row of theirs, None if unknown):
    no till or job reads a merged customer's counters, and an erased one has none."""
    if customer is None:
        return "customer is not known at central"
    if customer.status == "erased":
        return "customer was erased"
    if customer.status == "merged":
        return f"customer was merged into {customer.merged_into}: import the purchase there"
    return None


# --- export -------------------------------------------------------------------------------

export_page_rows = 5000


def _csv_line(values: Iterable[Any]) -> str:
    out: list[str] = []

    class _Sink:
        def write(self, text: str) -> None:
            out.append(text)

    csv.writer(_Sink(), lineterminator="\n").writerow(["" if v is None else v for v in values])
    return "".join(out)


def _pages(
    engine: sa.Engine, query: sa.Select[Any], key: sa.ColumnElement[Any], name: str
) -> Iterator[Any]:
    """Every row of `query` in `key` order, a bounded page per read transaction."""
    after: Any = None
    while True:
        page = query if after is None else query.where(key > after)
        with engine.connect() as conn:
            rows = conn.execute(page.order_by(key).limit(export_page_rows)).all()
        if not rows:
            return
        yield from rows
        after = getattr(rows[-1], name)


def export_customers(engine: sa.Engine) -> Iterator[str]:
    """customer_id, status, first_name, tier, birthday, language, consents, cards, points."""
    header = "customer_id status first_name tier birthday language"
    yield _csv_line([*header.split(), "consent_marketing", "consent_data", "card", "points"])
    cards = t.identifiers.alias("cards")
    points = t.accounts.alias("points")
    card_list = (
        sa.select(sa.func.min(cards.c.value))
        .where(cards.c.customer_id == t.customers.c.customer_id, cards.c.kind == "card")
        .scalar_subquery()
    )
    balance = (
        sa.select(points.c.balance)
        .where(
            points.c.account_key == sa.literal("customer:") + t.customers.c.customer_id,
            points.c.asset == "points",
        )
        .scalar_subquery()
    )
    query = sa.select(
        t.customers.c.customer_id,
        t.customers.c.status,
        t.customers.c.first_name,
        t.customers.c.tier,
        t.customers.c.birthday,
        t.customers.c.language,
        t.customers.c.consent_marketing,
        t.customers.c.consent_data,
        card_list.label("card"),
        balance.label("points"),
    )
    for row in _pages(engine, query, t.customers.c.customer_id, "customer_id"):
        values = list(row)
        values[6] = int(bool(values[6]))
        values[7] = int(bool(values[7]))
        values[9] = values[9] or 0
        yield _csv_line(values)


def export_balances(engine: sa.Engine) -> Iterator[str]:
    yield _csv_line(("account_key", "asset", "balance", "entries"))
    key = t.accounts.c.account_key + sa.literal("\t") + t.accounts.c.asset
    query = sa.select(
        key.label("k"),
        t.accounts.c.account_key,
        t.accounts.c.asset,
        t.accounts.c.balance,
        t.accounts.c.entries,
    )
    for row in _pages(engine, query, key, "k"):
        yield _csv_line(row[1:])


def export_ledger(engine: sa.Engine) -> Iterator[str]:
    columns = (
        "id",
        "entry_id",
        "device_id",
        "device_epoch",
        "device_seq",
        "kind",
        "account_key",
        "asset",
        "amount",
        "grant_key",
        "cheque_id",
        "reverses",
        "device_time_ms",
        "received_ms",
    )
    yield _csv_line(columns)
    query = sa.select(*(t.ledger.c[name] for name in columns))
    for row in _pages(engine, query, t.ledger.c.id, "id"):
        yield _csv_line(row)


def report_json(report: Report) -> str:
    return json.dumps(report.__dict__, ensure_ascii=False)
