from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from adapters.http import HttpClient, HttpSettings
from daemon import config
from daemon.errors import ConfigError

SAMPLE = Path(__file__).parents[2] / "config.toml"


def test_sample_config_loads_and_documents_every_setting() -> None:
    settings = config.load(SAMPLE, environ={})
    assert settings.inbox.after_ingest == "archive"
    raw = tomllib.loads(SAMPLE.read_text())
    present = {f"{section}.{key}" for section, values in raw.items() for key in values}
    assert present == config.documented_keys()
    text = SAMPLE.read_text()
    for key in config.documented_keys():
        name = key.split(".")[1]
        assert re.search(rf"#[^\n]*\n{name} = ", text), f"{key} has no comment above it"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"inbox": {"bogus": 1}}, "inbox.bogus"),
        ({"nonsense": {}}, "nonsense"),
        ({"inbox": {"max_file_bytes": "big"}}, "inbox.max_file_bytes"),
        ({"inbox": {"max_file_bytes": -1}}, "inbox.max_file_bytes"),
        ({"inbox": {"after_ingest": "shred"}}, "inbox.after_ingest"),
        ({"log": {"format": "xml"}}, "log.format"),
        ({"http": {"allowed_networks": "10.0.0.0/8"}}, "http.allowed_networks"),
        ({"http": {"allowed_networks": ["10.0.0.1/8"]}}, "http.allowed_networks"),
        ({"http": {"allowed_networks": ["lan"]}}, "http.allowed_networks"),
        ({"storage": {"url": "mysql://x@localhost/db"}}, "storage.url"),
        ({"storage": {"url": "not a url"}}, "storage.url"),
        ({"storage": {"url": ""}}, "storage.url"),
    ],
)
def test_bad_settings_name_the_dotted_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(raw, base_dir=Path("/srv"))
    assert caught.value.key == key
    assert str(caught.value).startswith(key)


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    settings = config.from_mapping({}, base_dir=tmp_path)
    assert settings.inbox_dir == tmp_path / "var/inbox"
    assert settings.database_url == f"sqlite:///{tmp_path}/var/storyline.db"


def test_environment_overrides_database_url_and_log_format(tmp_path: Path) -> None:
    env = {"STORYLINE_DATABASE_URL": "postgresql://db/x", "STORYLINE_LOG_FORMAT": "json"}
    settings = config.from_mapping({}, base_dir=tmp_path, environ=env)
    assert settings.database_url == "postgresql://db/x"
    assert settings.log.format == "json"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///var/storyline.db",
        "sqlite:////srv/storyline.db",
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://u:p@db/x",
    ],
)
def test_sqlite_and_postgresql_urls_are_accepted(url: str) -> None:
    assert config.from_mapping({"storage": {"url": url}}, base_dir=Path("/srv")).storage.url == url


def test_other_databases_are_refused_naming_storage_url_and_what_is_supported() -> None:
    env = {"STORYLINE_DATABASE_URL": "mysql://x:secret@localhost/db"}
    with pytest.raises(ConfigError) as caught:
        config.from_mapping({}, base_dir=Path("/srv"), environ=env)
    assert caught.value.key == "storage.url"
    assert "'mysql'" in str(caught.value) and "sqlite and postgresql" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_sources_tables_are_read_and_checked() -> None:
    raw = {
        "sources": [
            {
                "kind": "feed",
                "url": "https://x.org/rss",
                "name": "X",
                "min_interval": 600,
                "follow_links": True,
            }
        ]
    }
    (entry,) = config.from_mapping(raw, base_dir=Path("/srv")).sources
    assert (entry.kind, entry.url, entry.min_interval, entry.follow_links) == (
        "feed",
        "https://x.org/rss",
        600.0,
        True,
    )


def test_two_sources_with_one_name_are_refused() -> None:
    raw = {
        "sources": [
            {"kind": "feed", "url": "https://x.org/rss", "name": "x"},
            {"kind": "feed", "url": "https://y.org/rss"},
            {"kind": "page", "url": "https://x.org/page", "name": "x"},
        ]
    }
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(raw, base_dir=Path("/srv"))
    assert caught.value.key == "sources[2].name"
    assert "sources[0]" in str(caught.value)


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ({"url": "https://x.org"}, "sources[0].kind"),
        ({"kind": "feed"}, "sources[0].url"),
        ({"kind": "podcast", "url": "https://x.org"}, "sources[0].kind"),
        ({"kind": "feed", "url": "http://"}, "sources[0].url"),
        ({"kind": "feed", "url": "http://exa mple.com/"}, "sources[0].url"),
        ({"kind": "feed", "url": "file:///etc/passwd"}, "sources[0].url"),
        ({"kind": "feed", "url": "https://x.org", "every": 5}, "sources[0].every"),
        ({"kind": "feed", "url": "https://x.org", "min_interval": -1}, "sources[0].min_interval"),
        (
            {"kind": "feed", "url": "https://x.org", "max_interval": float("inf")},
            "sources[0].max_interval",
        ),
        (
            {"kind": "feed", "url": "https://x.org", "max_interval": float("nan")},
            "sources[0].max_interval",
        ),
    ],
)
def test_bad_sources_name_the_entry_and_key(source: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_mapping({"sources": [source]}, base_dir=Path("/srv"))
    assert caught.value.key == key


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"inbox": {"archive": "var/inbox/archive"}}, "inbox.archive"),
        ({"inbox": {"rejected": "var/inbox"}}, "inbox.rejected"),
        ({"scheduler": {"min_interval": 90000.0}}, "scheduler.min_interval"),
        ({"scheduler": {"backoff_base": 100000.0}}, "scheduler.backoff_base"),
        ({"scheduler": {"parser_processes": -1}}, "scheduler.parser_processes"),
        ({"scheduler": {"max_interval": float("inf")}}, "scheduler.max_interval"),
        ({"http": {"deadline": float("nan")}}, "http.deadline"),
    ],
)
def test_settings_wrong_together_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.from_mapping(raw, base_dir=Path("/srv"))
    assert caught.value.key == key


def test_allowed_networks_reach_the_http_client() -> None:
    raw = {"http": {"allowed_networks": ["10.1.0.0/16", " fd00:1::/64 "]}}
    settings = config.from_mapping(raw, base_dir=Path("/srv"))
    assert settings.http.allowed_networks == ("10.1.0.0/16", "fd00:1::/64")
    client = HttpClient(HttpSettings(**dataclasses.asdict(settings.http)))
    with client:
        assert client._is_allowed("10.1.2.3") and not client._is_allowed("10.2.0.1")
