"""The agent's configuration: a TOML file, overridden by `KOPILKA_AGENT_*` variables.

A bad file or key stops the agent at start with a message naming where the value came from
(the file, or the variable that overrode it), the key and the problem; nothing is
half-configured. Secrets (the POS API token, the device credential, the
phone-hash key) live in files in `data_dir`, never in the database.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from drivers import CODEPAGE_NUMBERS, DevicesConfig, PrinterConfig
from protocol import CardRange, RuleSetError, Store, parse_rule_set

ENV_PREFIX = "KOPILKA_AGENT_"

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file or variable, and the key."""


class _BadVariable(Exception):
    """A `KOPILKA_AGENT_*` variable that cannot be read; not a `ValueError`, so that
    pydantic-settings lets it through instead of hiding the variable's name."""


class _Environment(EnvSettingsSource):
    """The `KOPILKA_AGENT_*` variables. A table or list set by a variable is JSON; one that is
    not would stop pydantic-settings before validation with a traceback naming neither the
    variable nor the key, so it is reported here, as a bad value of that variable."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as error:
            names = " or ".join(_variables_of(field_name)) or ENV_PREFIX + field_name.upper()
            raise _BadVariable(
                f"{names}: {field_name}: not valid JSON ({error}); a table or a list set by "
                f"an environment variable is written as JSON"
            ) from error


def _variables_of(field_name: str) -> list[str]:
    """The variables that set `field_name` or a key inside it (`…_DEVICES__READERS`)."""
    name = ENV_PREFIX + field_name.upper()
    return sorted(
        variable
        for variable in os.environ
        if variable.upper() == name or variable.upper().startswith(name + "__")
    )


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Path("var/agent")
    listen_host: Literal["127.0.0.1", "::1", "localhost"] = "127.0.0.1"
    listen_port: Annotated[int, Field(ge=1, le=65535)] = 8765
    api_token: Annotated[str, Field(min_length=16, max_length=200)] | None = None
    """The POS's token; when absent, one is made at first start in `data_dir/api-token`."""
    store: Store = Store(store_id="store-1", name="Store 1")
    card_ranges: tuple[CardRange, ...] = (
        CardRange(name="chain", first="2770000000000", last="2770009999999", check="ean"),
    )
    phone_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "RU"
    rules_file: Path | None = None
    """A rule set to start with until central sends one (TOML, see docs/rules.md)."""
    central_url: str | None = None
    enroll_code: Annotated[str, Field(min_length=8, max_length=64)] | None = None
    """With `central_url`, the agent enrolls itself at start (the demo and scripted installs)."""
    http_timeout_s: PositiveSeconds = 5.0
    hold_timeout_s: PositiveSeconds = 1.5
    sync_interval_s: PositiveSeconds = 10.0
    sync_jitter_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    sync_backoff_s_max: Annotated[float, Field(ge=1, le=3600)] = 300.0
    """Longest wait between failed syncs (exponential backoff with jitter up to this)."""
    sync_batch_entries_max: Annotated[int, Field(ge=1, le=500)] = 500
    sync_runs_in: Literal["process", "thread"] = "process"
    """`process`: the sync job runs in a child process of its own, so that its work never holds
    the POS API's GIL (docs/sync.md, "The sync process"); `thread`: in the agent's scheduler."""
    sync_process_nice: Annotated[int, Field(ge=0, le=19)] = 10
    """How much lower the sync process's CPU priority is than the POS API's (POSIX `nice`)."""
    request_body_bytes_max: Annotated[int, Field(ge=1024, le=4 * 1024 * 1024)] = 256 * 1024
    expiry_check_interval_s: PositiveSeconds = 30.0
    wal_checkpoint_interval_s: PositiveSeconds = 2.0
    """How often the database's write-ahead log is copied into the file, off the sale path."""
    session_ttl_s: PositiveSeconds = 300.0
    """How long a customer identified by the till's own device stays the till's session."""
    devices: DevicesConfig = DevicesConfig()

    @property
    def db_path(self) -> Path:
        return self.data_dir / "till.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_Environment(settings_cls), init_settings)


def _key(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _variable(loc: tuple[str | int, ...], environment: dict[str, Any]) -> str | None:
    """The `KOPILKA_AGENT_*` variable that set the value at `loc` (variables win over the
    file), or None when the file did. `environment` is what the variables set, as values."""
    node: Any = environment
    keys: list[str] = []
    for part in loc:
        if not isinstance(node, dict):
            break  # a list or a value the variable set whole
        if part not in node:
            return None
        keys.append(str(part))
        node = node[part]
    names = {name.upper(): name for name in os.environ}
    for depth in range(len(keys), 0, -1):  # the deepest: `…_DEVICES__READERS`, then `…_DEVICES`
        name = names.get(ENV_PREFIX + "__".join(keys[:depth]).upper())
        if name is not None:
            return name
    return None


def _described(
    problems: list[tuple[tuple[str | int, ...], str]], source: str, environment: dict[str, Any]
) -> str:
    """One line per problem: where the bad value came from (its variable, else `source`), its
    key, what is wrong with it."""
    return "\n".join(
        f"{_variable(loc, environment) or source}: {_key(loc)}: {problem}"
        for loc, problem in problems
    )


def _read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: no such configuration file") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    except OSError as error:  # a folder, no permission, an I/O error
        reason = error.strerror or error
        raise ConfigError(f"{path}: cannot read the configuration file: {reason}") from error


def _rules_problem(settings: AgentSettings) -> str | None:
    """Why `rules_file` cannot be used; read at load, so that a bad one stops every command
    with the configuration's other errors, not the agent halfway through its start."""
    if settings.rules_file is None:
        return None
    try:
        parse_rule_set(
            settings.rules_file.read_text(encoding="utf-8"), source=str(settings.rules_file)
        )
    except OSError as error:
        return f"cannot read {settings.rules_file}: {error.strerror or error}"
    except UnicodeDecodeError as error:
        return f"{settings.rules_file}: not UTF-8 text: {error}"
    except RuleSetError as error:
        return str(error).replace("\n", "\n  ")
    return None


def _codepage_problem(printer: PrinterConfig) -> str | None:
    """Why this printer cannot select its code page: found at load, where the key can be
    named, rather than when its worker starts (`run`, `doctor`)."""
    known = CODEPAGE_NUMBERS.get(printer.model)
    if printer.codepage_number is not None or (known and printer.codepage in known):
        return None
    if known is None:
        return (
            f"model {printer.model!r} is not one of {', '.join(CODEPAGE_NUMBERS)}: set "
            f"codepage_number, the n of ESC t n for {printer.codepage.upper()} in the "
            f"printer's manual or self-test page (docs/devices.md)"
        )
    return (
        f"{printer.model} printers have no known ESC t number for {printer.codepage}: set "
        f'codepage = "cp866", or codepage_number from the printer\'s manual (docs/devices.md)'
    )


def _problems(settings: AgentSettings) -> list[tuple[tuple[str | int, ...], str]]:
    """What the models alone cannot see: the rules file and the printers' code pages."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    rules = _rules_problem(settings)
    if rules is not None:
        found.append((("rules_file",), rules))
    for index, printer in enumerate(settings.devices.printers):
        codepage = _codepage_problem(printer)
        if codepage is not None:
            found.append((("devices", "printers", index), f"printer {printer.name!r}: {codepage}"))
    return found


def _unknown_variable() -> str | None:
    """The first `KOPILKA_AGENT_*` variable that names no setting, in words: a misspelt
    variable would otherwise be ignored, and the agent run on a value nobody meant (a file's
    unknown key is refused the same way)."""
    fields = AgentSettings.model_fields
    for variable in sorted(os.environ):
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        key = variable[len(ENV_PREFIX) :].split("__")[0].lower()
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {ENV_PREFIX}{close[0].upper()}?)" if close else ""
            return f"{variable}: no such setting{hint}"
    return None


def load_settings(path: Path | None, **overrides: Any) -> AgentSettings:
    """Settings from `path` (TOML) and the environment; raises `ConfigError` with the key."""
    unknown = _unknown_variable()
    if unknown is not None:
        raise ConfigError(unknown)
    values = _read_file(path) if path is not None else {}
    values.update(overrides)
    source = str(path or "settings")
    try:
        environment = _Environment(AgentSettings)()
        settings = AgentSettings(**values)
    except _BadVariable as error:
        raise ConfigError(str(error)) from error
    except ValidationError as error:
        found = [(item["loc"], item["msg"]) for item in error.errors()]
        raise ConfigError(_described(found, source, environment)) from error
    found = _problems(settings)
    if found:
        raise ConfigError(_described(found, source, environment))
    return settings


__all__ = ["AgentSettings", "ConfigError", "load_settings"]
