"""The event vocabulary: frozen dataclasses with stable type names and a JSON codec.

Event types are stable strings ("article.revised"), never import paths. A payload
stored under an older ``schema_version`` is brought up to date by an upcaster
registered in ``UPCASTERS`` before it is decoded.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    event_type: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ArticleVersionEvent(DomainEvent):
    """Fields shared by the first and every later version of an article."""

    article_id: str
    article_key: str
    channel: str
    source_id: str
    title: str
    standfirst: str | None
    body: str
    url: str | None
    byline: str | None
    published_at: datetime | None
    content_hash: str
    fingerprint: str
    observed_at: datetime
    source_name: str | None = None
    source_version: str | None = None
    source_observed_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArticleDiscovered(ArticleVersionEvent):
    event_type: ClassVar[str] = "article.discovered"


@dataclass(frozen=True, slots=True, kw_only=True)
class ArticleRevised(ArticleVersionEvent):
    event_type: ClassVar[str] = "article.revised"

    kind: str  # substantive | cosmetic | revert
    changed_fields: tuple[str, ...]
    chars_added: int
    chars_removed: int
    previous_version: int
    previous_check_at: datetime | None
    reverts_to_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArticleWithdrawn(DomainEvent):
    event_type: ClassVar[str] = "article.withdrawn"

    article_id: str
    source_id: str
    reason: str
    observed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ArticleRestored(DomainEvent):
    event_type: ClassVar[str] = "article.restored"

    article_id: str
    source_id: str
    observed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ArticleTrackingStopped(DomainEvent):
    """No change for the quiet period: the page is no longer re-checked."""

    event_type: ClassVar[str] = "article.tracking_stopped"

    article_id: str
    source_id: str
    observed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class InputRejected(DomainEvent):
    event_type: ClassVar[str] = "input.rejected"

    input: str  # a path or a URL
    reason: str  # short code: empty, binary, too-large, symlink ...
    message: str  # the sentence a person reads
    kept_at: str | None  # where the input is now, if it still exists
    content_sha256: str | None
    observed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceAdded(DomainEvent):
    event_type: ClassVar[str] = "source.added"

    source_id: str
    kind: str
    url: str
    name: str | None
    settings: JsonDict = field(default_factory=dict)
    origin: str = "cli"  # cli | config


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceChanged(DomainEvent):
    event_type: ClassVar[str] = "source.changed"

    source_id: str
    name: str | None
    settings: JsonDict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRemoved(DomainEvent):
    event_type: ClassVar[str] = "source.removed"

    source_id: str


EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.event_type: cls
    for cls in (
        ArticleDiscovered,
        ArticleRevised,
        ArticleWithdrawn,
        ArticleRestored,
        ArticleTrackingStopped,
        InputRejected,
        SourceAdded,
        SourceChanged,
        SourceRemoved,
    )
}

# (event_type, from_version) -> function taking the old payload, returning the next one.
UPCASTERS: dict[tuple[str, int], Callable[[JsonDict], JsonDict]] = {}


class UnknownEventType(ValueError):
    """A stored event names a type this code does not know."""


def encode(event: DomainEvent) -> JsonDict:
    """The JSON-ready payload of an event: datetimes as ISO-8601 UTC, tuples as lists."""
    names = _FIELD_NAMES.get(type(event))
    if names is None:
        names = _FIELD_NAMES[type(event)] = tuple(f.name for f in dataclasses.fields(event))
    payload = {}
    for name in names:
        value = getattr(event, name)
        payload[name] = value if value is None or type(value) in _AS_IS else _to_json(value)
    return payload


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_AS_IS = frozenset({str, int, bool, float})  # written to JSON as they are


def decode(event_type: str, schema_version: int, payload: JsonDict) -> DomainEvent:
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    payload = upcast(event_type, schema_version, payload, target=cls.schema_version)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in payload:
            kwargs[f.name] = _from_json(payload[f.name], f.type)
    return cls(**kwargs)


def upcast(event_type: str, version: int, payload: JsonDict, *, target: int) -> JsonDict:
    while version < target:
        payload = UPCASTERS[(event_type, version)](dict(payload))
        version += 1
    return payload


def to_iso(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``; every timestamp we store has this one shape."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be aware UTC")
        value = value.astimezone(UTC)
    # what strftime("%Y-%m-%dT%H:%M:%S.%fZ") writes on Linux (a year below 1000 is not
    # zero-padded there), at a third of its cost; stored payloads must not change
    return _ISO % (value.year, value.month, value.day, value.hour, value.minute,
                   value.second, value.microsecond)  # fmt: skip


_ISO = "%d-%02d-%02dT%02d:%02d:%02d.%06dZ"


@functools.lru_cache(maxsize=4096)
def from_iso(value: str) -> datetime:
    """An aware UTC datetime from ISO-8601 text. Cached: rows read together share a few
    instants (a poll cycle writes one ``last_check_at`` for every source it checked),
    and datetimes are immutable."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _from_json(value: Any, annotation: object) -> Any:
    text = str(annotation)
    if value is not None and "datetime" in text:
        return from_iso(value)
    if value is not None and text.startswith("tuple"):
        return tuple(value)
    return value
