"""`kopilka-central rules check|quote`: real files, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from central.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RULES = str(EXAMPLES / "rules" / "base.toml")
BASKET = str(EXAMPLES / "basket.json")
AT = "2026-11-25T12:00:00+03:00"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_the_hash(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["rules", "check", RULES], capsys)
    assert code == 0, err
    assert "base-2026" in out
    from protocol import parse_rule_set

    expected = parse_rule_set(Path(RULES).read_text()).content_hash
    assert f"sha256        {expected}" in out


def test_quote_prints_quote_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["rules", "quote", "--rules", RULES, "--basket", BASKET, "--at", AT]
    argv += ["--customer", str(EXAMPLES / "customer.json"), "--store", str(EXAMPLES / "store.json")]
    code, out, err = run([*argv, "--redeem", "all"], capsys)
    assert code == 0, err
    quote = json.loads(out)
    assert quote["rule_set_id"] == "base-2026"
    assert quote["burn_points"] > 0
    assert quote["payable"] == quote["total"] - quote["discount"]


def test_quote_explain_is_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["rules", "quote", "--rules", RULES, "--basket", BASKET, "--at", AT, "--explain"]
    code, out, err = run([*argv, "--customer", str(EXAMPLES / "customer.json")], capsys)
    assert code == 0, err
    assert "why:" in out
    assert "autumn-10" in out
    assert "points earned" in out


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("rules", "basket", "extra", "message"),
    [
        (
            '[[earn]]\nid = "double-dairy"\nkind = "multiplier"\nmultiplier_permille = 2.0\n',
            None,
            [],
            'rules.toml: rule "double-dairy": multiplier_permille: must be an integer',
        ),
        (None, "{not json", [], "basket.json: not valid JSON"),
        (
            None,
            '{"lines": [{"line_id": "1", "sku": "a", "quantity_milli": 1000, '
            '"unit_price": 100, "total": 100.0}]}',
            [],
            "basket.json: lines.0.total: Input should be a valid integer",
        ),
        (None, None, ["--at", "2026-11-25T12:00:00"], "--at: '2026-11-25T12:00:00' needs a time"),
        (None, None, ["--redeem", "1.5"], "--redeem: '1.5' is not a whole number"),
        ('currency = "KZT"\n', None, [], "cannot quote: basket is in RUB, rule set t in KZT"),
        (None, None, ["--customer", "/nonexistent/c.json"], "/nonexistent/c.json: cannot read"),
    ],
)
def test_bad_inputs_exit_2_with_a_named_problem(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rules: str | None,
    basket: str | None,
    extra: list[str],
    message: str,
) -> None:
    header = 'rule_set_id = "t"\neffective_from = 2026-01-01T00:00:00+03:00\n'
    rules_file = write(tmp_path, "rules.toml", header + (rules or ""))
    basket_file = write(tmp_path, "basket.json", basket) if basket else BASKET
    argv = ["rules", "quote", "--rules", rules_file, "--basket", basket_file, *extra]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_check_a_bad_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["rules", "check", write(tmp_path, "r.toml", "x = [")], capsys)
    assert code == 2
    assert "r.toml: not valid TOML" in err


def test_the_installed_command_runs(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.toml", 'rule_set_id = "t"\n')
    done = subprocess.run(
        [sys.executable, "-m", "central.cli", "rules", "check", bad],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2
    assert "bad.toml: effective_from: is required" in done.stderr
    assert "Traceback" not in done.stderr
