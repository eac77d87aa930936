"""`_bulk.pg_array`, the arrays push builds itself, against psycopg's own list dumper: the
server must read the same array from both (compared as its text, bounds included)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central import _bulk

pytestmark = pytest.mark.postgres

_texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
_bigints = st.integers(-(2**63), 2**63 - 1)
_values = st.one_of(
    st.lists(_texts, max_size=40),
    st.lists(_bigints, max_size=40),
    st.lists(st.integers(-(2**70), 2**70), max_size=5),
    st.lists(st.one_of(st.none(), _texts), max_size=10),
    st.lists(st.one_of(st.none(), _bigints), max_size=10),
)


@pytest.fixture(scope="module")
def pg(postgres_admin_url: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        yield conn


def _read(pg: Any, cast: str, value: Any) -> Any:
    import psycopg

    try:
        return pg.execute(f"SELECT (%b::{cast})::text", (value,)).fetchone()[0]
    except psycopg.Error as error:
        return type(error)


@settings(max_examples=400, deadline=None)
@given(values=_values)
def test_pg_array_is_read_as_psycopg_lists_are(pg: Any, values: list[Any]) -> None:
    made = _bulk.pg_array(values)
    kinds = {type(value) for value in values}
    casts = ["text[]", "varchar(36)[]"] if str in kinds else ["bigint[]", "integer[]"]
    for cast in casts:
        assert _read(pg, cast, made) == _read(pg, cast, list(values))


def test_pg_array_builds_the_plain_cases_itself() -> None:
    assert type(_bulk.pg_array(["customer:c1", "é"])) is _bulk.TextArray
    assert type(_bulk.pg_array([1, -(2**63), 2**63 - 1])) is _bulk.BigintArray
    for other in ([], [None], ["a", None], [1, "a"], [2**63], [True], [b"x"]):
        assert type(_bulk.pg_array(other)) is list


def test_unnest_keeps_the_order_of_built_arrays(pg: Any) -> None:
    keys, numbers = ["k3", "k1", "k2"], [30, 10, 20]
    rows = pg.execute(
        "SELECT k, n FROM unnest(%b::text[], %b::bigint[]) WITH ORDINALITY AS u(k, n, o)"
        " ORDER BY o",
        (_bulk.pg_array(keys), _bulk.pg_array(numbers)),
    ).fetchall()
    assert rows == list(zip(keys, numbers, strict=True))
