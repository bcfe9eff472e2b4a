"""Settings: read once from ``config.toml`` with tomllib into frozen dataclasses.

Every setting is declared once below with its type, default and check; an unknown key
or a bad value is a ConfigError naming the dotted key. Relative paths are relative to
the directory of the config file. Two environment variables override the file:
``STORYLINE_DATABASE_URL`` (storage.url) and ``STORYLINE_LOG_FORMAT`` (log.format).
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from adapters.normalize import http_url_problem
from daemon.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSettings:
    url: str = "sqlite:///var/storyline.db"
    synchronous: str = "FULL"
    wal_checkpoint_seconds: float = 300.0
    wal_warn_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxSettings:
    path: str = "var/inbox"
    archive: str = "var/archive"
    rejected: str = "var/rejected"
    after_ingest: str = "archive"
    max_file_bytes: int = 10 * 1024 * 1024
    rescan_seconds: float = 30.0
    stable_seconds: float = 2.0
    observer: str = "auto"
    batch_size: int = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSection:
    timeout_connect: float = 10.0
    timeout_read: float = 20.0
    deadline: float = 30.0
    max_body_bytes: int = 15 * 1024 * 1024
    max_redirects: int = 5
    allow_private_networks: bool = False
    allowed_networks: tuple[str, ...] = ()  # CIDRs exempt from the guard (LAN sources)
    per_host_concurrency: int = 2
    per_host_min_delay: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSettings:
    enabled: bool = True
    tick_seconds: float = 5.0
    workers: int = 8
    parser_processes: int = 0  # 0: one per CPU
    parse_timeout: float = 20.0
    min_interval: float = 300.0
    max_interval: float = 86400.0
    backoff_base: float = 300.0
    backoff_cap: float = 86400.0
    page_first_interval: float = 1200.0
    page_growth: float = 1.2
    page_max_interval: float = 86400.0
    quiet_days: float = 40.0
    lease_seconds: float = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    listen: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceEntry:
    """One ``[[sources]]`` table."""

    kind: str
    url: str
    name: str | None = None
    min_interval: float | None = None
    max_interval: float | None = None
    follow_links: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    storage: StorageSettings = field(default_factory=StorageSettings)
    inbox: InboxSettings = field(default_factory=InboxSettings)
    log: LogSettings = field(default_factory=LogSettings)
    http: HttpSection = field(default_factory=HttpSection)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    sources: tuple[SourceEntry, ...] = ()
    base_dir: Path = Path(".")

    def path(self, value: str) -> Path:
        """A configured path, resolved against the config file's directory."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    @property
    def database_url(self) -> str:
        """storage.url with a relative SQLite path made absolute."""
        url = self.storage.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]).resolve())
        return url

    @property
    def inbox_dir(self) -> Path:
        return self.path(self.inbox.path)

    @property
    def archive_dir(self) -> Path:
        return self.path(self.inbox.archive)

    @property
    def rejected_dir(self) -> Path:
        return self.path(self.inbox.rejected)


_CHOICES: dict[str, tuple[str, ...]] = {
    "storage.synchronous": ("FULL", "NORMAL"),
    "inbox.after_ingest": ("archive", "delete", "keep"),
    "inbox.observer": ("auto", "inotify", "polling"),
    "log.level": ("debug", "info", "warning", "error"),
    "log.format": ("auto", "json", "console"),
}
SOURCE_KINDS = ("feed", "changelog", "page")
_POSITIVE = {
    "storage.wal_checkpoint_seconds",
    "storage.wal_warn_bytes",
    "inbox.max_file_bytes",
    "inbox.rescan_seconds",
    "inbox.batch_size",
    "http.timeout_connect",
    "http.timeout_read",
    "http.deadline",
    "http.max_body_bytes",
    "http.per_host_concurrency",
    "scheduler.tick_seconds",
    "scheduler.workers",
    "scheduler.parse_timeout",
    "scheduler.min_interval",
    "scheduler.max_interval",
    "scheduler.backoff_base",
    "scheduler.backoff_cap",
    "scheduler.page_first_interval",
    "scheduler.page_growth",
    "scheduler.page_max_interval",
    "scheduler.quiet_days",
    "scheduler.lease_seconds",
}
_SECTIONS: dict[str, type] = {
    "storage": StorageSettings,
    "inbox": InboxSettings,
    "log": LogSettings,
    "http": HttpSection,
    "scheduler": SchedulerSettings,
    "metrics": MetricsSettings,
}


def load(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check ``path``; a missing file is an error, not silent defaults."""
    environ = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    return from_mapping(raw, base_dir=path.resolve().parent, environ=environ)


def from_mapping(
    raw: Mapping[str, Any], *, base_dir: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    environ = environ or {}
    overrides = {
        ("storage", "url"): environ.get("STORYLINE_DATABASE_URL"),
        ("log", "format"): environ.get("STORYLINE_LOG_FORMAT"),
    }
    unknown = sorted(set(raw) - set(_SECTIONS) - {"sources"})
    if unknown:
        raise ConfigError(unknown[0], "unknown section")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        values = dict(_table(raw.get(name, {}), name))
        for (section, key), value in overrides.items():
            if section == name and value:
                values[key] = value
        sections[name] = _section(cls, name, values)
    settings = Settings(base_dir=base_dir, sources=_sources(raw.get("sources", [])), **sections)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    """Settings that are each valid but wrong together."""
    inbox = settings.inbox_dir.resolve()
    for key in ("archive", "rejected"):
        folder = settings.path(getattr(settings.inbox, key)).resolve()
        if folder == inbox or inbox in folder.parents:
            raise ConfigError(f"inbox.{key}", f"{folder} is inside the inbox {inbox}")
    s = settings.scheduler
    for low, high in (
        ("min_interval", "max_interval"),
        ("backoff_base", "backoff_cap"),
        ("page_first_interval", "page_max_interval"),
    ):
        if getattr(s, low) > getattr(s, high):
            raise ConfigError(f"scheduler.{low}", f"is larger than scheduler.{high}")
    if s.parser_processes < 0:
        raise ConfigError("scheduler.parser_processes", "must be 0 (one per CPU) or more")


def _sources(raw: Any) -> tuple[SourceEntry, ...]:
    if not isinstance(raw, list):
        raise ConfigError("sources", "must be an array of tables: [[sources]]")
    entries: list[SourceEntry] = []
    for index, table in enumerate(raw):
        key = f"sources[{index}]"
        values = dict(_table(table, key))
        for required in ("kind", "url"):
            if required not in values:
                raise ConfigError(f"{key}.{required}", "is required")
        problem = isinstance(values["url"], str) and http_url_problem(values["url"])
        if problem:
            raise ConfigError(f"{key}.url", f"{values['url']!r} {problem}")
        if values["kind"] not in SOURCE_KINDS:
            raise ConfigError(
                f"{key}.kind", f"must be one of {', '.join(SOURCE_KINDS)}, got {values['kind']!r}"
            )
        entry = _section(SourceEntry, key, values)
        named = [e.name for e in entries]
        if entry.name is not None and entry.name in named:
            raise ConfigError(
                f"{key}.name", f"{entry.name!r} is also sources[{named.index(entry.name)}]'s name"
            )
        entries.append(entry)
    return tuple(entries)


def _table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, got {value!r}")
    return value


def _section(cls: type, name: str, values: Mapping[str, Any]) -> Any:
    declared = {f.name: f for f in fields(cls)}
    for key in values:
        if key not in declared:
            raise ConfigError(f"{name}.{key}", "unknown setting")
    checked = {key: _check(f"{name}.{key}", declared[key].default, v) for key, v in values.items()}
    return cls(**checked)


def _check(key: str, default: Any, value: Any) -> Any:
    if key == "http.allowed_networks":
        return _networks(key, value)
    if key == "storage.url":
        return _database_url(key, value)
    expected = type(default)
    if default is None or default is MISSING:
        return _check_optional(key, value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        raise ConfigError(key, f"must be a {expected.__name__}, got {value!r}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(key, f"must be one of {', '.join(_CHOICES[key])}, got {value!r}")
    if key in _POSITIVE and not value > 0:  # NaN is not
        raise ConfigError(key, f"must be positive, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    return value


DATABASES = ("sqlite", "postgresql")


def _database_url(key: str, value: Any) -> str:
    """A URL of a database storyline supports (whether its driver is installed and
    the database answers is only known when it is opened)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {value!r}")
    try:
        backend = make_url(value).get_backend_name()
    except ArgumentError:  # the URL is not repeated: it may hold a password
        raise ConfigError(
            key, "is not a database URL (sqlite:///PATH or postgresql://USER@HOST/NAME)"
        ) from None
    if backend not in DATABASES:
        raise ConfigError(
            key, f"unsupported database {backend!r}: storyline supports {' and '.join(DATABASES)}"
        )
    return value


def _networks(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, f'must be a list of networks like "10.1.0.0/16", got {value!r}')
    networks = []
    for text in value:
        try:
            networks.append(str(ipaddress.ip_network(text.strip())))
        except ValueError as exc:
            raise ConfigError(key, f"{text!r} is not a network: {exc}") from None
    return tuple(networks)


def _check_optional(key: str, value: Any) -> Any:
    if key.endswith((".url", ".kind", ".name")):
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"must be a non-empty string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(key, f"must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    return float(value)


def documented_keys() -> set[str]:
    """Every dotted key a config file may set (the sample must document each)."""
    return {f"{name}.{f.name}" for name, cls in _SECTIONS.items() for f in fields(cls)}


def as_dict(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        name: {f.name: getattr(getattr(settings, name), f.name) for f in fields(cls)}
        for name, cls in _SECTIONS.items()
    }
