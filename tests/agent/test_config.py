"""A bad configuration stops `kopilka-agent` at start with exit code 2 and a message naming
where the bad value came from and its key, never a traceback (docs/install.md, "Configure")."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agent._config import load_settings

from .agent_process import AGENT, free_port, write_config

FILE_PRINTER = (
    '[[devices.printers]]\nname = "slip"\ntransport = {{ kind = "file", path = "{path}" }}\n'
)


def agent(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def assert_refused(done: subprocess.CompletedProcess[str], *says: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("kopilka-agent: bad configuration:\n"), done.stderr
    assert "Traceback" not in done.stderr
    for text in says:
        assert text in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [("KOPILKA_AGENT_DEVICES", "{not json", "devices"), ("KOPILKA_AGENT_STORE", "nope", "store")],
)
def test_a_variable_that_is_not_json_is_named(
    tmp_path: Path, variable: str, value: str, key: str
) -> None:
    config = write_config(tmp_path / "data", free_port())
    done = agent(config, "status", env={variable: value})
    assert_refused(done, f"{variable}: {key}: not valid JSON")


def test_a_folder_given_as_the_configuration_file(tmp_path: Path) -> None:
    done = agent(tmp_path, "status")
    assert_refused(done, f"{tmp_path}: cannot read the configuration file: Is a directory")


@pytest.mark.parametrize("command", ["status", "run"])
@pytest.mark.parametrize(
    ("rules", "says"),
    [("missing.toml", "No such file or directory"), ("broken.toml", "not valid TOML")],
)
def test_a_rules_file_that_cannot_be_used(
    tmp_path: Path, command: str, rules: str, says: str
) -> None:
    (tmp_path / "broken.toml").write_text("not = [valid\n", encoding="utf-8")
    config = write_config(tmp_path / "data", free_port(), rules=tmp_path / rules)
    done = agent(config, command)
    assert_refused(done, f"{config}: rules_file: ", says)


@pytest.mark.parametrize(
    ("printer", "command", "says"),
    [
        ('model = "xprinter"\n', "status", "model 'xprinter' is not one of epson"),
        ('model = "xprinter"\n', "run", "set codepage_number"),
        ('model = "citizen"\ncodepage = "cp1251"\n', "doctor", "no known ESC t number for cp1251"),
    ],
)
def test_a_printer_whose_code_page_cannot_be_selected(
    tmp_path: Path, printer: str, command: str, says: str
) -> None:
    """Found when the configuration is read, not when the printer's worker starts."""
    extra = FILE_PRINTER.format(path=tmp_path / "lp0") + printer
    config = write_config(tmp_path / "data", free_port(), extra)
    done = agent(config, command)
    assert_refused(done, f"{config}: devices.printers.0: printer 'slip': ", says)


def test_a_printer_with_its_own_number_is_accepted(tmp_path: Path) -> None:
    extra = (
        FILE_PRINTER.format(path=tmp_path / "lp0") + 'model = "xprinter"\ncodepage_number = 17\n'
    )
    config = write_config(tmp_path / "data", free_port(), extra)
    assert load_settings(config).devices.printers[0].codepage_number == 17


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"KOPILKA_AGENT_LISTEN_PORT": "notanumber"},
            "KOPILKA_AGENT_LISTEN_PORT: listen_port: Input should be a valid integer",
        ),
        (
            {"KOPILKA_AGENT_DEVICES__READERS": '[{"kind": "scanner"}]'},
            "KOPILKA_AGENT_DEVICES__READERS: devices.readers.0.scanner.port: Field required",
        ),
        (
            {"KOPILKA_AGENT_RULES_FILE": "/nonexistent/rules.toml"},
            "KOPILKA_AGENT_RULES_FILE: rules_file: cannot read /nonexistent/rules.toml",
        ),
        (  # misspelt: it would have been ignored, and the sync run every 30 s
            {"KOPILKA_AGENT_SYNC_INTERVAL": "5"},
            "KOPILKA_AGENT_SYNC_INTERVAL: no such setting "
            "(did you mean KOPILKA_AGENT_SYNC_INTERVAL_S?)",
        ),
        ({"KOPILKA_AGENT_PASSWORD": "x"}, "KOPILKA_AGENT_PASSWORD: no such setting"),
    ],
)
def test_a_bad_variable_is_blamed_on_the_variable(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    done = agent(config, "status", env=env)
    assert_refused(done, says)
    assert str(config) not in done.stderr


def test_each_bad_value_is_blamed_on_where_it_came_from(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nlisten_port = "abc"\nsession_ttl_s = 60\n',
        encoding="utf-8",
    )
    done = agent(config, "status", env={"KOPILKA_AGENT_SYNC_INTERVAL_S": "-1"})
    assert_refused(
        done,
        f"{config}: listen_port: Input should be a valid integer",
        "KOPILKA_AGENT_SYNC_INTERVAL_S: sync_interval_s: Input should be greater than 0",
    )
