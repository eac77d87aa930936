"""The rule-set file: parsing, readable errors, and the content hash."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from protocol import (
    RuleSet,
    RuleSetError,
    canonical_json,
    content_hash,
    effective_rule_set,
    parse_rule_set,
    rule_set_warnings,
)

from .rules_helpers import HEADER

ROOT = Path(__file__).resolve().parents[2]


def error_of(body: str, header: str = HEADER) -> str:
    with pytest.raises(RuleSetError) as caught:
        parse_rule_set(header + body, source="rules.toml")
    return str(caught.value)


def test_example_rule_set_parses() -> None:
    rule_set = parse_rule_set((ROOT / "examples/rules/base.toml").read_text(), source="base.toml")
    assert rule_set.rule_set_id == "base-2026"
    assert len(rule_set.content_hash) == 64


def test_hash_ignores_how_the_toml_is_written() -> None:
    one = parse_rule_set(
        HEADER
        + 'pending_days = 14\n[[earn]]\nid = "base"\nkind = "per_money"\npoints = 1\n'
        + '[[messages]]\nid = "m"\ntext = { ru = "Привет", en = "Hi" }\n'
    )
    other = parse_rule_set(
        "earn = [{ points = 1, kind = 'per_money', id = 'base', per = 100, basis = 'paid' }]\n"
        "effective_from = 2026-01-01T00:00:00+03:00\n"
        "rounding = 'floor'\n"
        "pending_days = 14\n"
        'rule_set_id = "t"\n'
        "[[messages]]\nid = 'm'\n[messages.text]\nen = 'Hi'\nru = 'Привет'\n"
    )
    assert one.content_hash == other.content_hash == content_hash(one)
    changed = parse_rule_set(HEADER + '[[earn]]\nid = "base"\nkind = "per_money"\npoints = 2\n')
    assert changed.content_hash != one.content_hash


def test_a_changed_copy_has_its_own_hash() -> None:
    rule_set = parse_rule_set(HEADER + "pending_days = 1\n")
    assert rule_set.content_hash == content_hash(rule_set)
    changed = rule_set.model_copy(update={"pending_days": 2})
    assert changed.content_hash == content_hash(changed) != rule_set.content_hash


def test_canonical_form_has_no_floats_and_round_trips() -> None:
    rule_set = parse_rule_set((ROOT / "examples/rules/base.toml").read_text())
    again = type(rule_set).model_validate_json(canonical_json(rule_set))
    assert again == rule_set
    assert again.content_hash == rule_set.content_hash


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[earn]]\nid = "double-dairy"\nkind = "multiplier"\nmultiplier_permille = 2.0\n',
            'rules.toml: rule "double-dairy": multiplier_permille: must be an integer',
        ),
        (
            '[[earn]]\nid = "x"\nkind = "per_money"\npoints = true\n',
            'rules.toml: rule "x": points: must be an integer',
        ),
        (
            '[[earn]]\nid = "x"\nkind = "per_money"\npoints = -1\n',
            'rules.toml: rule "x": points: Input should be greater than or equal to 0',
        ),
        (
            '[[earn]]\nid = "x"\nkind = "per_money"\n',
            'rules.toml: rule "x": points: is required',
        ),
        (
            '[[earn]]\nid = "x"\nkind = "per_money"\npoints = 1\npercent_bp = 5\n',
            'rules.toml: rule "x": percent_bp: is not a known field here',
        ),
        (
            '[[earn]]\nkind = "per_money"\npoints = 1\n',
            "rules.toml: earn[1]: id: is required",
        ),
        (
            '[[rewards]]\nid = "p"\nkind = "percent"\npercent_bp = 1000\ndays = ["someday"]\n',
            "rules.toml: rule \"p\": days.0: Input should be 'mon', 'tue', 'wed', 'thu', 'fri',"
            " 'sat' or 'sun'",
        ),
        (
            '[[rewards]]\nid = "p"\nkind = "percent"\npercent_bp = 1000\nhours = "9-10"\n',
            'rules.toml: rule "p": hours: String should match pattern',
        ),
        (
            '[[tiers]]\nid = "gold"\nmin_rolling_spend = 5\n[[tiers]]\nid = "silver"\n'
            "min_rolling_spend = 0\n",
            "rules.toml: tiers must be listed by rising min_rolling_spend, each different",
        ),
        (
            '[[earn]]\nid = "a"\nkind = "per_unit"\npoints = 1\n'
            '[[rewards]]\nid = "a"\nkind = "fixed"\namount = 1\n',
            "rules.toml: id 'a' is used twice; every id must be unique",
        ),
        (
            '[[grants]]\nid = "g"\nkind = "anniversary"\npoints = 1\n',
            "rules.toml: grant \"g\": kind: Input should be 'welcome', 'birthday' or 'referral'",
        ),
        ("[redemption]\nmax_share_bp = 10001\n", "rules.toml: redemption.max_share_bp: Input"),
    ],
)
def test_errors_name_the_file_the_rule_and_the_field(body: str, message: str) -> None:
    assert error_of(body).startswith(message)


def test_missing_header_and_bad_toml() -> None:
    assert error_of("", header="") == (
        "rules.toml: rule_set_id: is required\nrules.toml: effective_from: is required"
    )
    assert error_of("", header='rule_set_id = "x"\neffective_from = 2026-01-01T00:00:00\n') == (
        "rules.toml: effective_from: needs a time zone offset (e.g. 2026-01-01T00:00:00+03:00)"
    )
    assert error_of("[[earn]\n").startswith("rules.toml: not valid TOML: ")


def test_many_problems_are_listed_then_counted() -> None:
    body = "".join(f'[[earn]]\nid = "r{n}"\nkind = "per_unit"\npoints = 1.5\n' for n in range(8))
    lines = error_of(body).splitlines()
    assert lines[0] == 'rules.toml: rule "r0": points: must be an integer'
    assert lines[-1] == "rules.toml: ... and 3 more problems"


def test_the_rule_set_in_force_is_the_latest_started() -> None:
    def at(day: int, name: str) -> RuleSet:
        return parse_rule_set(
            f'rule_set_id = "{name}"\neffective_from = 2026-11-{day:02d}T00:00:00+03:00\n'
        )

    older, newer, future = at(1, "older"), at(20, "newer"), at(30, "future")
    moment = datetime(2026, 11, 25, tzinfo=UTC)
    assert effective_rule_set([future, newer, older], moment) is newer
    assert effective_rule_set([older, future], moment) is older
    assert effective_rule_set([future], moment) is None


def test_hours_are_clock_times() -> None:
    ok = '[[earn]]\nid = "n"\nkind = "per_unit"\npoints = 1\nhours = "20:00-24:00"\n'
    assert parse_rule_set(HEADER + ok).earn[0].hours == "20:00-24:00"
    assert "hours" in error_of(ok.replace("20:00-24:00", "20:00-24:30"))


def test_warnings_point_at_likely_mistakes() -> None:
    rule_set = parse_rule_set(
        HEADER
        + '[[tiers]]\nid = "silver"\nmin_rolling_spend = 0\n'
        + '[[earn]]\nid = "m"\nkind = "multiplier"\nmultiplier_permille = 2000\npriority = 5\n'
        + '[[earn]]\nid = "b"\nkind = "per_money"\npoints = 1\ntiers = ["gold"]\n'
        + '[[messages]]\nid = "hi"\ntext = { en = "Hi" }\n'
    )
    assert rule_set_warnings(rule_set) == [
        'rule "m": a multiplier runs before every per-money and per-unit rule, so it '
        "multiplies nothing (give it a lower priority)",
        "rule \"b\": tiers ['gold'] are not among [[tiers]]",
        'message "hi": no text in the default language "ru"',
    ]
    example = parse_rule_set((ROOT / "examples/rules/base.toml").read_text())
    assert rule_set_warnings(example) == []
