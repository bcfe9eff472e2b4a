"""The registry of sources on its own: adding, naming, finding, removing, resuming."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.config import SourceEntry, from_mapping
from daemon.errors import UserError
from daemon.service import Services

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    made = Services(from_mapping({}, base_dir=tmp_path), clock=lambda: T0)
    made.prepare()
    yield made
    made.close()


def _events(services: Services) -> int:
    return services.store.head()


@pytest.mark.parametrize("url", ["http://", "http://exa mple.com/", "mailto:x@example.com"])
def test_a_url_that_cannot_be_fetched_is_refused_and_nothing_recorded(
    services: Services, url: str
) -> None:
    with pytest.raises(UserError, match="source URL"):
        services.registry.add(SourceEntry(kind="feed", url=url), origin="cli", now=T0)
    assert _events(services) == 0 and services.registry.list() == []


def test_followed_links_without_a_valid_host_are_skipped(services: Services) -> None:
    feed = services.registry.add(
        SourceEntry(kind="feed", url="https://news.example/rss"), origin="cli", now=T0
    )
    services.registry.follow_links(
        feed, ["http://exa mple.com/a", "http:///b", "https://news.example/story"], T0
    )
    urls = sorted(row["url"] for row in services.registry.list())
    assert urls == ["https://news.example/rss", "https://news.example/story"]


def test_resuming_a_removed_source_says_to_add_it_again_and_changes_nothing(
    services: Services,
) -> None:
    registry = services.registry
    sid = registry.add(
        SourceEntry(kind="page", url="https://news.example/story", name="story"),
        origin="cli",
        now=T0,
    )
    registry.remove(sid)
    before = _events(services)
    with pytest.raises(UserError) as caught:
        registry.resume("story", T0)
    assert str(caught.value) == (
        f"source {sid} was removed; add it again with "
        "`storyline sources add https://news.example/story --kind page`"
    )
    assert _events(services) == before
    (row,) = [r for r in registry.list() if r["source_id"] == sid]
    assert row["removed"]

    again = registry.add(
        SourceEntry(kind="page", url="https://news.example/story"), origin="cli", now=T0
    )
    current = registry.get(sid)
    assert again == sid and current is not None and not current["removed"]
    assert registry.resume(sid, T0) == sid
