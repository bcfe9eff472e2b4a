from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from storage import events
from storage.events import ArticleRevised, InputRejected, decode, encode


def revised() -> ArticleRevised:
    return ArticleRevised(
        article_id="a",
        article_key="k",
        channel="file",
        source_id="inbox",
        title="T",
        standfirst=None,
        body="B",
        url=None,
        byline=None,
        published_at=None,
        content_hash="h",
        fingerprint="f",
        observed_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        kind="cosmetic",
        changed_fields=("body",),
        chars_added=1,
        chars_removed=0,
        previous_version=1,
        previous_check_at=None,
    )


def test_round_trip_keeps_types_and_uses_stable_names() -> None:
    event = revised()
    payload = encode(event)
    assert payload["observed_at"] == "2026-01-02T03:04:00.000000Z"
    assert payload["changed_fields"] == ["body"]
    assert decode("article.revised", 1, payload) == event


def test_unknown_event_type_is_an_error() -> None:
    with pytest.raises(events.UnknownEventType):
        decode("article.exploded", 1, {})


def test_upcaster_brings_an_old_payload_up_to_date(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored v1 payload of a type now at v2 is upcast before decoding."""
    monkeypatch.setattr(InputRejected, "schema_version", 2)
    monkeypatch.setitem(
        events.UPCASTERS,
        ("input.rejected", 1),
        lambda p: {**p, "message": p.pop("why")},
    )
    stored_v1 = {
        "input": "x",
        "reason": "empty",
        "why": "x is empty",
        "kept_at": None,
        "content_sha256": None,
        "observed_at": "2026-01-01T00:00:00Z",
    }
    event = decode("input.rejected", 1, stored_v1)
    assert isinstance(event, InputRejected)
    assert event.message == "x is empty"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        events.to_iso(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 22, 12, 0, 5, 123456, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-8))),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # strftime does not pad
        datetime(1, 1, 1, tzinfo=UTC),
    ],
)
def test_timestamps_are_written_exactly_as_before(value: datetime) -> None:
    """Stored payloads are compared on re-append: their timestamps must not change."""
    assert events.to_iso(value) == value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
