"""CSV import of a customer base: streamed, every bad row reported by line with its reason,
nothing half-imported, a second run changes nothing; CSV export of what central holds."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from central import _csvio, make_engine, migrate
from central import _tables as t

from .checks import assert_ledger_consistent
from .tills import NOW, Hq


def get(hq: Hq, path: str) -> Any:
    answer = hq.client.get(path, headers=hq.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


HEADER = "customer_id,first_name,phone,card,birthday,consent_marketing,consent_data,points\n"
BAD = {
    # row index (0-based, data rows) -> (the row, the start of the reason)
    7: ("c-bad-phone,Ива,12345,,,1,1,10", "phone"),
    1_234: ("c-0000001,Дубль,,,,0,1,5", "customer c-0000001 appears twice"),
    40_000: ("c-bad-points,Пётр,,,,0,1,12a", "points must be"),
    77_777: ("c-bad-date,Анна,,,1990-13-01,0,1,0", "birthday"),
    99_998: ("c-card-twice,Олег,,2770000000017,,0,1,0", "card is used by an earlier row"),
}


def _good(index: int) -> str:
    card = "2770000000017" if index == 3 else f"99{index:011d}"
    phone = f"+7916{index:07d}" if index % 4 == 1 else ""
    return f"c-{index:07d},Имя {index},{phone},{card},,{index % 2},1,{index % 500}"


def write_base(path: Path, rows: int) -> dict[int, str]:
    """`rows` data rows (bad ones among them); returns the bad rows' file line numbers."""
    bad_lines = {}
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for index in range(rows):
            if index in BAD:
                out.write(BAD[index][0] + "\n")
                bad_lines[index + 2] = BAD[index][1]
            else:
                out.write(_good(index) + "\n")
    return bad_lines


def _counts(engine: sa.Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in (t.customers, t.identifiers, t.ledger, t.change_log, t.contacts)
        )


def _import(engine: sa.Engine, path: Path) -> _csvio.Report:
    with path.open(encoding="utf-8", newline="") as lines:
        return _csvio.import_customers(engine, lines, NOW)


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 40 s of CPU; a loaded machine stretches it
def test_import_of_100k_customers_reports_exactly_the_bad_rows_and_reruns_clean(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/central.db")
    migrate(engine)
    rows = 100_000
    source = tmp_path / "base.csv"
    bad_lines = write_base(source, rows)
    first = _import(engine, source)
    assert first.rows == rows
    assert {r["line"]: r["reason"] for r in first.rejected}.keys() == bad_lines.keys()
    for rejected in first.rejected:
        assert bad_lines[rejected["line"]] in rejected["reason"], rejected
    assert first.imported == rows - len(BAD)
    paying = sum(1 for i in range(rows) if i not in BAD and i % 500)
    assert first.entries == paying
    after_first = _counts(engine)
    assert after_first[0] == rows - len(BAD)
    second = _import(engine, source)
    assert (second.imported, second.entries, second.unchanged) == (0, 0, rows - len(BAD))
    assert [r["line"] for r in second.rejected] == [r["line"] for r in first.rejected]
    assert _counts(engine) == after_first
    balances = assert_ledger_consistent(engine)
    assert balances[("customer:c-0000499", "points")] == 499
    engine.dispose()


def test_import_and_export_through_the_admin_api(hq: Hq, engine: sa.Engine) -> None:
    hq.customer("c-0000002", first_name="Другая")  # present with other data: rejected
    source = HEADER + "\n".join(_good(i) for i in range(1, 40)) + "\nc-x,Bad,,,,maybe,1,1\n"
    headers = {**hq.headers, "content-type": "text/csv"}
    first = hq.client.post("/admin/import/customers", content=source.encode(), headers=headers)
    assert first.status_code == 200, first.text
    report = first.json()
    assert [(r["line"], r["customer_id"]) for r in report["rejected"]] == [
        (3, "c-0000002"),
        (41, "c-x"),
    ]
    assert report["imported"] == 38
    again = hq.client.post("/admin/import/customers", content=source.encode(), headers=headers)
    assert again.json()["imported"] == 0
    assert again.json()["unchanged"] == 38
    history = "customer_id,purchase_id,purchased_at,total_kopecks\nc-0000001,p1,2025-01-02,150000\n"
    history += "c-0000001,p2,2025-02-02,50000\nnobody,p3,2025-02-02,1\n"
    for expected_imported in (2, 0):
        done = hq.client.post("/admin/import/history", content=history.encode(), headers=headers)
        assert done.json()["imported"] == expected_imported
        assert [r["line"] for r in done.json()["rejected"]] == [4]
    exported = hq.client.get("/admin/export/customers.csv", headers=hq.headers)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    by_id = {row["customer_id"]: row for row in rows}
    assert len(rows) == 39
    assert by_id["c-0000005"]["points"] == "5"
    assert by_id["c-0000005"]["card"] == "9900000000005"
    balances = list(
        csv.DictReader(
            io.StringIO(hq.client.get("/admin/export/balances.csv", headers=hq.headers).text)
        )
    )
    spend = [
        b
        for b in balances
        if b["account_key"] == "customer:c-0000001" and b["asset"] == "rolling_spend"
    ]
    assert spend[0]["balance"] == "200000"
    ledger = hq.client.get("/admin/export/ledger.csv", headers=hq.headers).text.splitlines()
    assert len(ledger) == 1 + 38 + 4  # header, opening balances, history counters
    assert_ledger_consistent(engine)


def test_a_file_with_a_wrong_header_is_refused_whole(hq: Hq) -> None:
    response = hq.client.post(
        "/admin/import/customers",
        content=b"id,name\n1,x\n",
        headers={**hq.headers, "content-type": "text/csv"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "bad_csv"


def test_import_and_export_from_the_command_line(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from central.cli import main

    examples = Path(__file__).resolve().parents[2] / "examples" / "customers.csv"
    assert main(["import", "customers", str(examples), "--db", db_url]) == 1  # two bad phones
    report = json.loads(capsys.readouterr().out)
    assert (report["imported"], report["rejected_count"]) == (3, 2)
    assert main(["import", "customers", str(examples), "--db", db_url]) == 1
    assert json.loads(capsys.readouterr().out)["unchanged"] == 3
    out = tmp_path / "customers.csv"
    assert main(["export", "customers", str(out), "--db", db_url]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row["first_name"] for row in rows] == ["Анна", "Борис", "Дина"]


def _post(hq: Hq, kind: str, text: str) -> dict[str, Any]:
    headers = {**hq.headers, "content-type": "text/csv"}
    response = hq.client.post(f"/admin/import/{kind}", content=text.encode(), headers=headers)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


HISTORY = "customer_id,purchase_id,purchased_at,total_kopecks\n"


def test_long_ids_import_whole_and_a_second_run_adds_nothing(hq: Hq, engine: sa.Engine) -> None:
    """Every valid id (64 characters at most) imports: its entries' keys stay within the
    64 a key may have, one key per customer and per purchase, the same on every run. Two
    purchases whose long ids differ only at the end are two purchases."""
    longest = "c" * 64
    customers = f"customer_id,first_name,points\nok-1,Анна,10\n{longest},Иван,100\nok-2,Ольга,20\n"
    shop = "customer-000000000000000000001"
    history = HISTORY + "".join(
        f"{who},{what},2025-10-01,{total}\n"
        for who, what, total in [
            (shop, "store-0042-2025-10-01-cheque-000001", 10000),
            (shop, "store-0042-2025-10-01-cheque-000002", 20000),
            (longest, "p" * 64, 5000),
        ]
    )
    hq.customer(shop)
    for run in ("first", "again"):
        imported = _post(hq, "customers", customers)
        bought = _post(hq, "history", history)
        assert (imported["rejected"], bought["rejected"]) == ([], []), run
        if run == "first":
            assert (imported["imported"], bought["imported"]) == (3, 3)
        else:
            assert (imported["unchanged"], imported["entries"]) == (3, 0)
            assert (bought["unchanged"], bought["entries"]) == (3, 0)
        balances = assert_ledger_consistent(engine)
        assert balances[(f"customer:{longest}", "points")] == 100
        assert balances[(f"customer:{shop}", "purchases")] == 2
        assert balances[(f"customer:{shop}", "rolling_spend")] == 30000
        assert balances[(f"customer:{longest}", "rolling_spend")] == 5000
    with engine.connect() as conn:
        keys = conn.execute(sa.select(t.grants.c.grant_key)).scalars().all()
    assert len(keys) == len(set(keys)) == 3 + 3
    assert max(len(key) for key in keys) <= 64


def test_ids_with_colons_do_not_share_a_key(hq: Hq, engine: sa.Engine) -> None:
    """An id may hold `:`, the key's own separator: customer `a:b`'s opening balance is not
    customer `a`'s purchase `b`, nor is `a:b`'s purchase `c` `a`'s purchase `b:c`."""
    _post(hq, "customers", "customer_id,first_name,points\na,Анна,0\na:b,Иван,7\n")
    rows = [("a", "b", 100), ("a", "b:c", 200), ("a:b", "c", 300)]
    history = HISTORY + "".join(f"{who},{what},2025-10-01,{total}\n" for who, what, total in rows)
    assert _post(hq, "history", history)["imported"] == 3
    assert _post(hq, "history", history)["unchanged"] == 3
    balances = assert_ledger_consistent(engine)
    assert balances[("customer:a", "purchases")] == 2
    assert balances[("customer:a:b", "purchases")] == 1
    assert balances[("customer:a:b", "points")] == 7


def test_amounts_beyond_an_entrys_bounds_are_rejected_by_line(hq: Hq, engine: sa.Engine) -> None:
    """A points balance or a purchase too large for an entry is that row's rejection, not
    the whole file's."""
    customers = "customer_id,first_name,points\nok-1,Анна,10\nrich,Иван,10000000000000\n"
    report = _post(hq, "customers", customers)
    assert [(r["line"], r["customer_id"]) for r in report["rejected"]] == [(3, "rich")]
    assert "points must be at most" in report["rejected"][0]["reason"]
    history = HISTORY + "ok-1,p1,2025-10-01,10000000000000\nok-1,p2,2025-10-01,100\n"
    report = _post(hq, "history", history)
    assert [(r["line"], r["customer_id"]) for r in report["rejected"]] == [(2, "ok-1")]
    assert "total_kopecks must be at most" in report["rejected"][0]["reason"]
    balances = assert_ledger_consistent(engine)
    assert balances[("customer:ok-1", "points")] == 10
    assert balances[("customer:ok-1", "rolling_spend")] == 100


def test_a_customer_tills_cannot_read_is_rejected_by_line(hq: Hq) -> None:
    """A customer imported with a field a till refuses (a tier that is not an id, a
    language in Cyrillic, a birthday in another ISO form) would be a change no till can
    read, and every till's pull would stop at it: such a row is rejected, by line."""
    header = "customer_id,first_name,tier,language,birthday\n"
    rows = [
        "c1,Анна,gold,en,1990-01-31",
        "c2,Иван,Gold Plus,,",
        "c3,Олег,,ру,",
        "c4,Дина,,,19900131",
    ]
    report = _post(hq, "customers", header + "\n".join(rows) + "\n")
    rejected = [(r["line"], r["customer_id"]) for r in report["rejected"]]
    assert rejected == [(3, "c2"), (4, "c3"), (5, "c4")]
    reasons = [r["reason"] for r in report["rejected"]]
    assert "tier 'Gold Plus'" in reasons[0]
    assert "language 'ру'" in reasons[1]
    assert "birthday '19900131'" in reasons[2]
    pulled = hq.enroll().pull(since=0)  # it parses as a till parses it
    assert pulled.status_code == 200, pulled.text
    assert '"gold"' in pulled.text


def test_purchases_that_would_take_a_counter_past_its_bounds_refuse_the_file(
    hq: Hq, engine: sa.Engine
) -> None:
    """Two purchases of 10¹² kopecks each are each within an entry's bounds, but together
    past what a balance may hold: every till's pull would stop at that balance. Refused,
    naming the account; nothing of it written."""
    _post(hq, "customers", "customer_id,first_name,points\nok-1,Анна,10\n")
    history = HISTORY + "ok-1,p1,2025-10-01,1000000000000\nok-1,p2,2025-10-01,1000000000000\n"
    headers = {**hq.headers, "content-type": "text/csv"}
    refused = hq.client.post("/admin/import/history", content=history.encode(), headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "balance_out_of_range"
    assert "rolling_spend of customer:ok-1" in refused.json()["message"]
    balances = assert_ledger_consistent(engine)
    assert ("customer:ok-1", "rolling_spend") not in balances


def _send(hq: Hq, kind: str, body: bytes) -> Any:
    headers = {**hq.headers, "content-type": "text/csv"}
    return hq.client.post(f"/admin/import/{kind}", content=body, headers=headers)


def test_a_file_unreadable_past_some_line_keeps_what_came_before_and_says_where(
    hq: Hq, engine: sa.Engine
) -> None:
    """Bytes that are not UTF-8 on line 1,502, a quote never closed, a field past the CSV
    reader's limit: the rows before are imported and audited, the report says where the file
    stopped being read, and the file fixed imports the rest (the first rows unchanged)."""
    good = [f"c-{n},Имя {n}\n" for n in range(1, 1501)]
    head = "customer_id,first_name\n"
    broken = (head + "".join(good)).encode() + b"c-bad,\xff\xfe\n" + b"c-1501,Last\n"
    report = _send(hq, "customers", broken)
    assert report.status_code == 200, report.text
    assert report.json()["imported"] == 1500
    assert report.json()["stopped"].startswith("line 1502 is not UTF-8")
    audited = [row for row in get(hq, "/admin/audit") if row["action"] == "import_customers"]
    assert audited[0]["detail"]["imported"] == 1500
    assert "line 1502" in audited[0]["detail"]["stopped"]
    fixed = _post(hq, "customers", head + "".join(good) + "c-bad,Fixed\nc-1501,Last\n")
    assert (fixed["unchanged"], fixed["imported"], fixed["stopped"]) == (1500, 2, None)
    for body, said in [
        (head + 'c-q,"never closed\nc-r,Other\n', "from line 3 on: unexpected end of data"),
        (head + "c-big," + "A" * 200_000 + "\n", "from line 3 on: field larger than field"),
    ]:
        answer = _send(hq, "customers", (head + "c-ok,Fine\n" + body[len(head) :]).encode())
        assert answer.status_code == 200, answer.text
        assert said in answer.json()["stopped"]
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(t.customers)).scalar_one()
    assert count == 1500 + 2 + 1


def test_a_file_with_old_mac_line_ends_imports(hq: Hq) -> None:
    """Excel for Mac's "CSV (Macintosh)" ends lines with a lone CR. In a file of LF lines a
    stray CR is no line end: it does not make a row of what follows it."""
    report = _send(hq, "customers", b"customer_id,first_name\rc-1,Anna\rc-2,Boris\r")
    assert report.status_code == 200, report.text
    assert (report.json()["imported"], report.json()["stopped"]) == (2, None)
    stray = b"customer_id,first_name,phone\nc-3,Anna,\nc-4,Ira\rc-9,+79161234567\n"
    answer = _send(hq, "customers", stray)
    assert answer.status_code == 200, answer.text
    assert answer.json()["imported"] == 1
    assert "from line 3 on: new-line character seen" in answer.json()["stopped"]
    assert get(hq, "/admin/customers?name=%2B7") == []


def test_files_refused_whole_and_rows_refused_alone(hq: Hq) -> None:
    """A column named twice or a file that is not UTF-8 from its first line: nothing read.
    A NUL byte in a field, or a purchase of a merged or erased customer: that row."""
    twice = _send(hq, "customers", b"customer_id,first_name,first_name\nc-1,A,B\n")
    assert (twice.status_code, twice.json()["code"]) == (422, "bad_csv")
    assert "twice" in twice.json()["message"]
    utf16 = _send(hq, "customers", "customer_id,first_name\nc-1,Анна\n".encode("utf-16"))
    assert (utf16.status_code, utf16.json()["code"]) == (422, "bad_csv")
    report = _post(hq, "customers", "customer_id,first_name\nc-1,An\x00na\nc-2,Бо\nc-3,Ия\nk-1,K\n")
    assert [(r["line"], r["reason"]) for r in report["rejected"]] == [
        (2, "a field holds a NUL byte")
    ]
    hq.post("/admin/customers/merge", {"duplicate_id": "c-2", "keep_id": "k-1", "reason": "twin"})
    hq.post("/admin/customers/c-3/erase")
    rows = [("c-2", "p1"), ("c-3", "p2"), ("k-1", "p3")]
    history = HISTORY + "".join(f"{who},{what},2025-10-01,100\n" for who, what in rows)
    bought = _post(hq, "history", history)
    assert [(r["customer_id"], r["reason"]) for r in bought["rejected"]] == [
        ("c-2", "customer was merged into k-1: import the purchase there"),
        ("c-3", "customer was erased"),
    ]
    assert bought["imported"] == 1
