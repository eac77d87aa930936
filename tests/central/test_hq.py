"""HQ's admin API: customers, adjustments, rule sets, sync health, conflicts and quarantine
with audited actions."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa

from central import _jobs, _lots
from central import _tables as t
from protocol import (
    CustomerState,
    EntryKind,
    canonical_json,
    effective_rule_set,
    parse_rule_set,
)
from protocol._sync import identifiers_per_customer_max

from .checks import assert_ledger_consistent
from .sales import RULES_TOML, sale_document
from .tills import NOW, Hq

CARD = "2770000000017"


def get(hq: Hq, path: str, **params: Any) -> Any:
    response = hq.client.get(path, params=params, headers=hq.headers)
    assert response.status_code == 200, response.text
    return response.json()


def toml(hq: Hq, path: str, text: str, **params: Any) -> Any:
    headers = {**hq.headers, "content-type": "text/plain"}
    return hq.client.post(path, content=text.encode(), params=params, headers=headers)


def test_customers_search_cards_block_consent_and_adjust(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1", first_name="Анна", phones=["+7 916 123-45-67"])
    hq.customer("c2", first_name="Борис")
    assert [c["customer_id"] for c in get(hq, "/admin/customers", phone="8 916 123 45 67")] == [
        "c1"
    ]
    assert [c["customer_id"] for c in get(hq, "/admin/customers", name="Бор")] == ["c2"]
    hq.post("/admin/customers/c1/cards", {"number": "2770000000017"})
    assert [c["customer_id"] for c in get(hq, "/admin/customers", card="2770000000017")] == ["c1"]
    taken = hq.client.post(
        "/admin/customers/c2/cards", json={"number": "2770000000017"}, headers=hq.headers
    )
    assert taken.json()["code"] == "identifier_taken"
    replaced = hq.post(
        "/admin/customers/c1/replace-card",
        {"old_number": "2770000000017", "new_number": "2770000000024", "reason": "lost"},
    )
    assert {"type": "card", "number": "2770000000024"} in replaced["identifiers"]
    assert get(hq, "/admin/customers", card="2770000000017") == []
    blocked = hq.post("/admin/customers/c2/status", {"status": "blocked", "reason": "fraud check"})
    assert blocked["status"] == "blocked"
    consent = hq.client.put(
        "/admin/customers/c1/consent",
        json={"consent_marketing": True, "consent_data": True},
        headers=hq.headers,
    )
    assert consent.json()["consent_marketing"] is True
    hq.post("/admin/customers/c1/adjustments", {"points": 250, "reason": "goodwill"})
    assert get(hq, "/admin/customers/c1")["balances"] == {"points": 250}
    actions = [row["action"] for row in get(hq, "/admin/audit") if row["action"] != "customer_put"]
    assert actions == ["adjust", "consent", "status_blocked", "replace_card", "attach_card"]
    assert all(row["actor"] == "admin:tests" for row in get(hq, "/admin/audit"))
    assert_ledger_consistent(engine)


def test_customers_search_by_phone_and_card_at_once_and_by_a_name_as_typed(hq: Hq) -> None:
    """Both identifiers must match the one customer; `%` and `_` in a name are letters."""
    hq.customer("c1", first_name="Анна", phones=["+7 916 123-45-67"])
    hq.customer("c2", first_name="An_na%", phones=["+7 916 765-43-21"])
    hq.post("/admin/customers/c1/cards", {"number": "2770000000017"})
    hq.post("/admin/customers/c2/cards", {"number": "2770000000024"})
    both = get(hq, "/admin/customers", phone="+79161234567", card="2770000000017")
    assert [c["customer_id"] for c in both] == ["c1"]
    assert get(hq, "/admin/customers", phone="+79161234567", card="2770000000024") == []
    assert [c["customer_id"] for c in get(hq, "/admin/customers", name="%")] == []
    assert [c["customer_id"] for c in get(hq, "/admin/customers", name="An_")] == ["c2"]
    assert get(hq, "/admin/customers", name="_нна") == []


def test_an_adjustment_past_what_a_balance_can_hold_is_refused(hq: Hq, engine: sa.Engine) -> None:
    """Every till's pull would stop at a balance past 10¹²: HQ is told, and nothing moves."""
    hq.customer("c1")
    till = hq.enroll()
    hq.post("/admin/customers/c1/adjustments", {"points": 10**12, "reason": "typo"})
    more = hq.client.post(
        "/admin/customers/c1/adjustments", json={"points": 1, "reason": "again"}, headers=hq.headers
    )
    assert more.status_code == 422, more.text
    assert more.json()["code"] == "balance_out_of_range"
    assert "points of customer:c1 would be 1000000000001" in more.json()["message"]
    assert get(hq, "/admin/customers/c1")["balances"] == {"points": 10**12}
    assert till.pull(0).status_code == 200  # parses as a till parses it
    assert_ledger_consistent(engine)


def test_a_card_goes_to_no_erased_or_merged_customer(hq: Hq) -> None:
    """It would identify an erased customer again, or feed an account no till reads."""
    for customer_id in ("e1", "m1", "k1"):
        hq.customer(customer_id)
    hq.post("/admin/customers/e1/erase")
    hq.post("/admin/customers/merge", {"duplicate_id": "m1", "keep_id": "k1", "reason": "twin"})
    card = {"number": "2770000000017"}
    erased = hq.client.post("/admin/customers/e1/cards", json=card, headers=hq.headers)
    assert (erased.status_code, erased.json()["code"]) == (409, "erased")
    merged = hq.client.post("/admin/customers/m1/cards", json=card, headers=hq.headers)
    assert (merged.status_code, merged.json()["code"]) == (409, "customer_merged")
    assert merged.json()["details"] == {"kept_id": "k1"}
    assert get(hq, "/admin/customers", card="2770000000017") == []


def test_hq_actions_on_conflicts_and_quarantine_refuse_what_names_nothing(hq: Hq) -> None:
    """An item number past any there can be, and an adjustment without points."""
    for path in ("/admin/conflicts/99999999999999999999/action", "/admin/quarantine/0/action"):
        answer = hq.client.post(path, json={"action": "review", "note": "x"}, headers=hq.headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "invalid_request"
    hq.customer("c1")
    till = hq.enroll()
    assert till.push([till.entry("c1", 10)]).status_code == 200
    till.next_seq -= 1
    assert till.push([till.entry("c1", 20)]).status_code == 409  # an alarm for HQ
    conflict = get(hq, "/admin/conflicts")[0]["id"]
    empty = {"action": "adjust", "note": "fix"}
    path = f"/admin/conflicts/{conflict}/action"
    answer = hq.client.post(path, json=empty, headers=hq.headers)
    assert (answer.status_code, answer.json()["code"]) == (422, "adjust_needs_points")
    assert get(hq, "/admin/conflicts")[0]["status"] == "open"


def test_an_adjustment_moves_the_asset_it_names(hq: Hq, engine: sa.Engine) -> None:
    """HQ gives back the stamps a till failed to record: the stamp card changes, points do
    not, and the tills hear of it; a counter is never taken below zero."""
    hq.customer("c1")
    till = hq.enroll()
    assert till.push([till.entry("c1", 100)]).status_code == 200
    seen = till.pull(0).json()["next_cursor"]
    stamps = {"points": 3, "reason": "lost stamps", "asset": "stamps:coffee"}
    done = hq.post("/admin/customers/c1/adjustments", stamps)
    assert get(hq, "/admin/customers/c1")["balances"] == {"points": 100, "stamps:coffee": 3}
    assert done["asset"] == "stamps:coffee"
    moved = [c for c in till.pull(seen).json()["changes"] if c["type"] == "balance"]
    assert [(c["asset"], c["balance"]) for c in moved] == [("stamps:coffee", 3)]
    too_many = hq.client.post(
        "/admin/customers/c1/adjustments",
        json={**stamps, "points": -4},
        headers=hq.headers,
    )
    assert too_many.status_code == 422, too_many.text
    assert too_many.json()["code"] == "counter_below_zero"
    assert "stamps:coffee" in too_many.json()["message"]
    unknown = hq.client.post(
        "/admin/customers/c1/adjustments",
        json={**stamps, "asset": "miles"},
        headers=hq.headers,
    )
    assert unknown.status_code == 422, unknown.text
    hq.post("/admin/customers/c1/adjustments", {**stamps, "points": -3})
    assert get(hq, "/admin/customers/c1")["balances"] == {"points": 100, "stamps:coffee": 0}
    [last, *_] = get(hq, "/admin/audit")
    assert last["detail"]["asset"] == "stamps:coffee"
    assert_ledger_consistent(engine)


def test_merge_moves_points_identifiers_and_counters(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("keep")
    hq.customer("dup", phones=["+79031234567"])
    till = hq.enroll()
    items = [till.entry("dup", 40), till.entry("dup", 2, EntryKind.counter, asset="purchases")]
    assert till.push(items).status_code == 200
    merged = hq.post(
        "/admin/customers/merge", {"duplicate_id": "dup", "keep_id": "keep", "reason": "same man"}
    )
    assert merged["balances"] == {"points": 40, "purchases": 2}
    assert [i["type"] for i in merged["identifiers"]] == ["phone_hash"]
    dup = get(hq, "/admin/customers/dup")
    assert (dup["status"], dup["merged_into"], dup["balances"]) == (
        "merged",
        "keep",
        {"points": 0, "purchases": 0},
    )
    assert_ledger_consistent(engine)


def test_an_adjustment_of_a_merged_customer_is_refused_naming_the_one_kept(
    hq: Hq, engine: sa.Engine
) -> None:
    """A merged customer's account is never used again (nothing moves it later): points put
    there would be lost, so HQ is told which customer to adjust instead, from the customer
    page and from the quarantine alike, and nothing is written."""
    hq.customer("keep")
    hq.customer("dup")
    hq.post("/admin/customers/merge", {"duplicate_id": "dup", "keep_id": "keep", "reason": "twin"})
    till = hq.enroll()
    assert till.push([till.entry("nobody", 30)]).status_code == 200  # quarantined
    [held] = get(hq, "/admin/quarantine")
    with engine.connect() as conn:
        entries = conn.execute(sa.select(sa.func.count()).select_from(t.ledger)).scalar_one()
    refusals = [
        hq.client.post(
            "/admin/customers/dup/adjustments",
            json={"points": 500, "reason": "goodwill"},
            headers=hq.headers,
        ),
        hq.client.post(
            f"/admin/quarantine/{held['id']}/action",
            json={"action": "adjust", "note": "typo in id", "customer_id": "dup", "points": 30},
            headers=hq.headers,
        ),
    ]
    for refused in refusals:
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "customer_merged"
        assert refused.json()["details"] == {"kept_id": "keep"}
        assert "adjust keep instead" in refused.json()["message"]
    assert get(hq, "/admin/customers/keep")["balances"] == {}
    assert [item["id"] for item in get(hq, "/admin/quarantine")] == [held["id"]]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.ledger)).scalar_one() == (
            entries
        )
    hq.customer("last")
    hq.post(
        "/admin/customers/merge", {"duplicate_id": "keep", "keep_id": "last", "reason": "triplet"}
    )
    again = hq.client.post(
        "/admin/customers/dup/adjustments",
        json={"points": 500, "reason": "goodwill"},
        headers=hq.headers,
    )
    assert again.json()["details"] == {"kept_id": "last"}  # merges are followed


def test_erasure_removes_contacts_and_sends_a_tombstone(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1", phones=["+79161234567"])
    till = hq.enroll()
    hq.post("/admin/customers/c1/erase")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.contacts)).scalar() == 0
    kinds = [change["type"] for change in till.pull(0).json()["changes"]]
    assert kinds[-1] == "erasure"
    done = [(row["action"], row["target"]) for row in get(hq, "/admin/audit")]
    assert ("customer_put", "c1") in done  # HQ made and erased them: both audited
    assert ("erase", "c1") in done
    assert "+7916" not in json.dumps(get(hq, "/admin/audit"))  # what changed, not the values


def test_rule_sets_validate_diff_and_publish_into_the_pull_stream(hq: Hq) -> None:
    till = hq.enroll()
    bad = toml(hq, "/admin/rule-sets/validate", RULES_TOML.replace("pending_days = 14", "x = 1"))
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_rule_set"
    valid = toml(hq, "/admin/rule-sets/validate", RULES_TOML).json()
    assert valid["rule_set_id"] == "base-2026"
    first_diff = toml(hq, "/admin/rule-sets/diff", RULES_TOML).json()
    assert first_diff["current"] is None
    published = toml(
        hq, "/admin/rule-sets/publish", RULES_TOML, effective_from="2026-11-01T00:00:00+03:00"
    )
    assert published.status_code == 200, published.text
    same = toml(hq, "/admin/rule-sets/diff", RULES_TOML).json()
    assert same["current"] == "base-2026"
    next_version = RULES_TOML.replace('"base-2026"', '"base-2027"').replace(
        "pending_days = 14", "pending_days = 7"
    )
    changed = toml(hq, "/admin/rule-sets/diff", next_version).json()
    assert changed["same"] is False
    assert '- "pending_days": 14,' in "\n".join(changed["diff"])
    assert '+ "pending_days": 7,' in "\n".join(changed["diff"])
    changes = till.pull(0).json()["changes"]
    rule_sets = [c for c in changes if c["type"] == "rule_set"]
    assert [(c["rule_set_id"], c["effective_from"]) for c in rule_sets] == [
        ("base-2026", "2026-11-01T00:00:00+03:00")
    ]
    assert rule_sets[0]["content_hash"] == published.json()["content_hash"]


def test_the_current_rule_set_is_the_one_tills_evaluate_with(hq: Hq, clock: Any) -> None:
    """Two rule sets that start at the same moment: HQ's `current` (listing and diff) is the
    one the evaluator takes, the greater `rule_set_id`, whichever was published last."""
    texts = [
        RULES_TOML.replace('"base-2026"', f'"{rule_set_id}"')
        for rule_set_id in ("spring-b", "spring-a")
    ]
    for text in texts:  # both start when the file says
        assert toml(hq, "/admin/rule-sets/publish", text).status_code == 200
        clock.advance(60)
    in_force = effective_rule_set([parse_rule_set(text) for text in texts], clock())
    assert in_force is not None
    assert in_force.rule_set_id == "spring-b"
    assert get(hq, "/admin/rule-sets")["current"] == "spring-b"
    assert toml(hq, "/admin/rule-sets/diff", texts[1]).json()["current"] == "spring-b"


def test_device_health_reports_seen_acked_lag_and_skew(hq: Hq) -> None:
    hq.customer("c1")
    till = hq.enroll()
    assert till.push([till.entry("c1", 5), till.entry("c1", 5)]).status_code == 200
    [health] = get(hq, "/admin/devices/health")
    assert health["acked_seq"] == 2
    assert health["last_seen_ago_s"] == 0
    assert health["outbox_lag_ms"] == 0
    assert health["clock_skew_ms"] == 0
    assert get(hq, "/admin/offline-limits")["offline_window_days"] == 30
    assert [s["store_id"] for s in get(hq, "/admin/stores")] == ["s1"]


def test_conflicts_and_quarantine_actions_are_audited(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c1")
    one, two = hq.enroll("s1"), hq.enroll("s2")
    assert one.push([one.entry("c1", 10)]).status_code == 200
    assert two.push([two.entry("c1", -50, EntryKind.burn)]).status_code == 200
    _jobs.run(engine, _jobs.BY_NAME["debts"], NOW, "t")
    [overspend] = get(hq, "/admin/conflicts/open")
    assert overspend["account_key"] == "customer:c1"
    assert overspend["detail"]["balance"] == -40  # JSON, not JSON in a string
    done = hq.post(
        f"/admin/conflicts/{overspend['id']}/action", {"action": "write_off", "note": "bad luck"}
    )
    assert done["status"] == "written_off"
    assert get(hq, "/admin/customers/c1")["balances"] == {"points": 0}
    again = hq.client.post(
        f"/admin/conflicts/{overspend['id']}/action",
        json={"action": "review", "note": "again"},
        headers=hq.headers,
    )
    assert again.status_code == 409
    assert one.push([one.entry("nobody", 30)]).status_code == 200  # quarantined
    [held] = get(hq, "/admin/quarantine")
    hq.post(
        f"/admin/quarantine/{held['id']}/action",
        {"action": "adjust", "note": "typo in id", "customer_id": "c1", "points": 30},
    )
    assert get(hq, "/admin/quarantine") == []
    assert get(hq, "/admin/customers/c1")["balances"] == {"points": 30}
    actions = [row["action"] for row in get(hq, "/admin/audit")]
    assert [a for a in actions if a.startswith(("quarantine", "conflict"))] == [
        "quarantine_adjust",
        "conflict_write_off",
    ]
    assert_ledger_consistent(engine)


def test_a_customers_lots_and_debt_are_the_fold_of_their_entries(hq: Hq, engine: sa.Engine) -> None:
    """HQ's customer view shows the lots with points left and the debt as the ledger folds
    them, expiry included (the view reads the state push keeps, not the ledger)."""
    hq.customer("c1")
    till = hq.enroll()
    expires = NOW + timedelta(days=30)
    items = [
        till.entry("c1", 40),
        till.entry("c1", 25, expires_at=expires),
        till.entry("c1", -30, EntryKind.burn),  # from the expiring lot first, then the other
    ]
    assert till.push(items).status_code == 200
    view = get(hq, "/admin/customers/c1")
    with engine.connect() as conn:
        folded = _lots.fold_account(conn, "customer:c1")
    assert view["lots"] == [_lots.lot_dict(lot) for lot in folded.open_lots()]
    assert [lot["left"] for lot in view["lots"]] == [35]
    assert view["debt"] == 0
    overspent = hq.enroll()
    assert overspent.push([overspent.entry("c1", -50, EntryKind.burn)]).status_code == 200
    view = get(hq, "/admin/customers/c1")
    assert (view["lots"], view["debt"]) == ([], 15)


def test_a_customer_gets_no_more_identifiers_than_a_till_takes(hq: Hq) -> None:
    """A till refuses a customer change with more than `identifiers_per_customer_max` cards
    and phones, and would then read no later change: central refuses the one too many, keeps
    the rest, and the pull stays readable."""
    cards = [f"27700000{n:04d}" for n in range(identifiers_per_customer_max + 1)]
    identifiers = [{"type": "card", "number": card + _check_digit(card)} for card in cards]
    hq.customer("many", identifiers=identifiers[:-1])
    response = hq.client.post(
        "/admin/customers",
        json={"customer_id": "many", "identifiers": identifiers[-1:]},
        headers=hq.headers,
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "too_many_identifiers"
    assert len(get(hq, "/admin/customers/many")["identifiers"]) == identifiers_per_customer_max
    hq.customer("later")
    pulled = hq.enroll().pull(since=0)  # it parses as a till parses it
    assert pulled.status_code == 200
    assert '"many"' in pulled.text
    assert '"later"' in pulled.text


def _check_digit(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return str((10 - total % 10) % 10)


def _personal(engine: sa.Engine, needles: dict[str, str]) -> set[tuple[str, str]]:
    """(table, what) for every table holding one of `needles` anywhere in a row."""
    found = set()
    with engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                text = " ".join(
                    value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                    for value in row
                )
                found |= {(table.name, what) for what, needle in needles.items() if needle in text}
    return found


def test_an_erasure_leaves_no_personal_data_at_central(hq: Hq, engine: sa.Engine) -> None:
    """The customer's changes in the log (a till pulling from 0 got the name, birthday and
    phone; a push that granted them a bonus logged them beside its balances), the cheque
    documents (the birthday as the till saw it), a sign-up waiting in the quarantine, and a
    document that arrives after the erasure: only the tombstone keeps the identifiers, for
    the tills to drop them."""
    hq.customer("c9", first_name="Зинаида", birthday="1984-03-09", phones=["+79035550123"])
    till = hq.enroll()
    state = CustomerState(customer_id="c9", birthday=date(1984, 3, 9))
    signup = {
        "record": "signup", "signup_id": "5f0c3e9a-0000-7000-8000-000000000001",
        "device_id": till.device_id, "device_epoch": 1, "device_seq": till.next_seq,
        "store_id": "s1", "provisional_customer_id": "c9",
        "identifiers": [{"type": "card", "number": "2770000000017"}],
        "consent_marketing": False, "consent_data": True, "first_name": "Зинаида",
        "device_time": "2026-11-25T09:00:00Z",
    }  # fmt: skip
    assert till.push([till.store_record(json.dumps(signup).encode())]).status_code == 200
    before = _document(till, "c9", state)
    welcome = till.entry("c9", 100, EntryKind.welcome, grant_key="welcome:c9")
    assert till.push([before, welcome]).status_code == 200
    with engine.connect() as conn:
        kinds = conn.execute(sa.select(t.change_log.c.kind)).scalars().all()
    assert "mixed" in kinds  # the grant's customer change with the push's balance
    pulled = hq.enroll()
    with engine.connect() as conn:
        phone_hash = conn.execute(
            sa.select(t.identifiers.c.value).where(t.identifiers.c.kind == "phone_hash")
        ).scalar_one()
    needles = {"name": "Зинаида", "birthday": "1984-03-09", "phone hash": phone_hash}
    assert {what for _, what in _personal(engine, needles)} == set(needles)
    hq.post("/admin/customers/c9/erase")
    late = _document(till, "c9", state)
    assert till.push([late]).json()["results"][0]["outcome"] == "applied"
    assert till.push([before, welcome, late]).status_code == 200  # replays: the same hashes
    assert _personal(engine, needles) == {("change_log", "phone hash")}
    tombstone = pulled.pull(0).json()["changes"][-1]
    assert tombstone["type"] == "erasure"
    assert phone_hash in json.dumps(tombstone)
    customers = [c for c in pulled.pull(0).json()["changes"] if c["type"] == "customer"]
    assert [c["state"] for c in customers] == [{"customer_id": "c9", "status": "erased"}] * 2


def test_an_erasure_reaches_conflicts_the_audit_and_merged_duplicates(
    hq: Hq, engine: sa.Engine
) -> None:
    """A cheque document of the customer's that HQ holds as a conflict's payload, the card
    numbers in HQ's audit of the customer, and a duplicate merged into them (the same
    person, with a name and birthday of their own): none keeps their data after the erasure."""
    hq.customer("c9", first_name="Зинаида", birthday="1984-03-09")
    hq.customer("d9", first_name="Зина", birthday="1984-03-09")
    hq.post("/admin/customers/merge", {"duplicate_id": "d9", "keep_id": "c9", "reason": "twin"})
    hq.post("/admin/customers/c9/cards", {"number": "2770000000017"})
    replace = {"old_number": "2770000000017", "new_number": "2770000000024", "reason": "lost"}
    hq.post("/admin/customers/c9/replace-card", replace)
    till = hq.enroll()
    assert till.push([_document(till, "c9", CustomerState(customer_id="c9"))]).status_code == 200
    till.next_seq -= 1  # the same seq again, with the birthday in it: a conflict
    born = CustomerState(customer_id="c9", birthday=date(1984, 3, 9))
    assert till.push([_document(till, "c9", born)]).status_code == 409
    needles = {"name": "Зин", "birthday": "1984-03-09", "old card": "2770000000017"}
    assert {table for table, _ in _personal(engine, needles)} >= {"conflicts", "audit_log"}
    hq.post("/admin/customers/c9/erase")
    assert _personal(engine, needles) == set()
    assert get(hq, "/admin/customers/d9")["status"] == "erased"
    done = [row for row in get(hq, "/admin/audit") if row["action"] == "replace_card"]
    assert done[0]["detail"] == {"new": "erased", "old": "erased"}


def _document(till: Any, customer_id: str, state: CustomerState) -> Any:
    return till.store_record(canonical_json(sale_document(till, customer_id, customer=state)))


def test_an_update_changes_only_the_fields_it_gives(hq: Hq, engine: sa.Engine) -> None:
    """HQ blocks a customer, then sets their tier: they stay blocked, with their name and
    consents. A merged customer is not updated (it would come back to life), and a status
    of merged or erased comes only from those routes."""
    hq.customer("c1", first_name="Вера", consent_data=True, consent_marketing=True)
    hq.customer("c1", status="blocked")
    hq.customer("c1", tier="gold")
    kept = get(hq, "/admin/customers/c1")
    assert (kept["status"], kept["tier"], kept["first_name"]) == ("blocked", "gold", "Вера")
    assert (kept["consent_data"], kept["consent_marketing"]) == (True, True)
    hq.customer("c2")
    hq.post("/admin/customers/merge", {"duplicate_id": "c2", "keep_id": "c1", "reason": "twin"})
    merged = hq.client.post("/admin/customers", json={"customer_id": "c2"}, headers=hq.headers)
    assert merged.status_code == 409, merged.text
    assert merged.json()["code"] == "customer_merged"
    assert "c1" in merged.json()["message"]
    assert get(hq, "/admin/customers/c2")["status"] == "merged"
    for status in ("merged", "erased"):
        refused = hq.client.post(
            "/admin/customers", json={"customer_id": "c3", "status": status}, headers=hq.headers
        )
        assert refused.status_code == 422, refused.text


def test_settings_and_devices_changed_by_hq_are_audited(hq: Hq) -> None:
    """Stores, enrollment codes, the chain's card ranges, offline limits and revoking a till
    change what tills may do with money: each is in the audit log with who did it."""
    till = hq.enroll("s7")  # a store and an enrollment code
    limits = get(hq, "/admin/offline-limits") | {"phone_only_points_max": 50}
    answer = hq.client.put("/admin/offline-limits", json=limits, headers=hq.headers)
    assert answer.status_code == 200, answer.text
    ranges = {
        "card_ranges": [
            {"name": "club", "first": "2770000000000", "last": "2779999999999", "check": "ean"}
        ]
    }
    answer = hq.client.put("/admin/chain", json=ranges, headers=hq.headers)
    assert answer.status_code == 200, answer.text
    hq.post(f"/admin/devices/{till.device_id}/revoke")
    done = [(row["action"], row["target"]) for row in reversed(get(hq, "/admin/audit"))]
    assert done == [
        ("store_put", "s7"),
        ("enrollment_code", "s7"),
        ("offline_limits", "chain"),
        ("chain_settings", "chain"),
        ("revoke_device", till.device_id),
    ]
    assert get(hq, "/admin/audit")[2]["detail"]["phone_only_points_max"] == 50


def test_hq_removes_a_card_or_a_phone_and_every_till_drops_it(hq: Hq, engine: sa.Engine) -> None:
    """A customer gave up their phone number: it no longer finds them, is no longer texted,
    and the tills' next pull carries the customer without it."""
    hq.customer("c1", phones=["+7 916 123-45-67"], identifiers=[{"type": "card", "number": CARD}])
    till = hq.enroll()
    cursor = till.pull(0).json()["next_cursor"]
    removed = hq.post(
        "/admin/customers/c1/identifiers/remove", {"phone": "8 916 123 45 67", "reason": "gone"}
    )
    assert [i["type"] for i in removed["identifiers"]] == ["card"]
    assert get(hq, "/admin/customers", phone="89161234567") == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.contacts)).all() == []
    [change] = till.pull(cursor).json()["changes"]
    assert change["identifiers"] == [{"type": "card", "number": CARD}]
    again = hq.client.post(
        "/admin/customers/c1/identifiers/remove",
        json={"phone": "+79161234567", "reason": "gone"},
        headers=hq.headers,
    )
    assert (again.status_code, again.json()["code"]) == (404, "unknown_identifier")
    both = {"card": CARD, "phone": "+79161234567", "reason": "x"}
    answer = hq.client.post("/admin/customers/c1/identifiers/remove", json=both, headers=hq.headers)
    assert answer.status_code == 422
    hq.post("/admin/customers/c1/identifiers/remove", {"card": CARD, "reason": "lost"})
    assert get(hq, "/admin/customers/c1")["identifiers"] == []
    assert get(hq, "/admin/audit")[0]["detail"] == {"kind": "card", "reason": "lost"}
