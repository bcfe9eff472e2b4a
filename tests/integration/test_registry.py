"""The registry of sources on its own: adding, naming, finding, removing, resuming."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.config import SourceEntry, from_mapping
from daemon.errors import UserError
from daemon.service import Services
from storage.events import SourceChanged

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


def _add(services: Services, url: str, name: str | None = None) -> str:
    return services.registry.add(SourceEntry(kind="page", url=url, name=name), origin="cli", now=T0)


def test_a_name_is_unique_among_sources_not_removed(services: Services) -> None:
    registry = services.registry
    first = _add(services, "https://news.example/a", "gpage")
    before = _events(services)
    with pytest.raises(UserError) as caught:
        _add(services, "https://news.example/b", "gpage")
    assert str(caught.value) == (
        f"the name 'gpage' is taken by source {first} (https://news.example/a); "
        "choose another name, or remove that source first"
    )
    other = _add(services, "https://news.example/b", "other")
    with pytest.raises(UserError, match="is taken"):  # renaming to it, too
        _add(services, "https://news.example/b", "gpage")
    assert _events(services) == before + 1
    assert _add(services, "https://news.example/a", "gpage") == first  # the same source

    registry.remove("gpage")
    second = _add(services, "https://news.example/c", "gpage")  # free again
    assert registry.resolve("gpage")["source_id"] == second  # not the removed one
    assert registry.resolve("other")["source_id"] == other


def test_a_name_several_sources_have_is_ambiguous(services: Services) -> None:
    """Databases from before names were unique may hold such names."""
    registry = services.registry
    ids = [_add(services, f"https://news.example/{n}", f"page{n}") for n in range(2)]
    for sid in ids:  # what an older storyline recorded
        registry._append(sid, SourceChanged(source_id=sid, name="gpage", settings={}))
    with pytest.raises(UserError) as caught:
        registry.remove("gpage")
    assert str(caught.value) == (
        f"the name 'gpage' is ambiguous: sources {ids[0]}, {ids[1]}; give the id"
    )
    assert not any(row["removed"] for row in registry.list())
    registry.remove(ids[0])
    assert registry.resolve("gpage")["source_id"] == ids[1]  # the one not removed
    assert _add(services, "https://news.example/1", "gpage") == ids[1]  # kept as it is
