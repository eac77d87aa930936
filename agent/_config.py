"""The agent's configuration: a TOML file, overridden by `KOPILKA_AGENT_*` variables.

A bad file or key stops the agent at start with a message naming the file, the key and the
problem; nothing is half-configured. Secrets (the POS API token, the device credential, the
phone-hash key) live in files in `data_dir`, never in the database.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from drivers import DevicesConfig
from protocol import CardRange, Store

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and the key."""


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KOPILKA_AGENT_", env_nested_delimiter="__", extra="forbid", frozen=True
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
        return (env_settings, init_settings)


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        problems.append(f"{source}: {key}: {item['msg']}")
    return "\n".join(problems)


def load_settings(path: Path | None, **overrides: Any) -> AgentSettings:
    """Settings from `path` (TOML) and the environment; raises `ConfigError` with the key."""
    values: dict[str, Any] = {}
    source = "environment"
    if path is not None:
        source = str(path)
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ConfigError(f"{path}: no such configuration file") from error
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from error
    values.update(overrides)
    try:
        return AgentSettings(**values)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from error


__all__ = ["AgentSettings", "ConfigError", "load_settings"]
