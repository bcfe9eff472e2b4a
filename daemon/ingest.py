"""The domain rules: given what we already know of an article and a new observation,
which event (if any) records it. Pure: no clock, no database, no I/O.

- Same ``content_hash`` as the latest version from the same channel: no event.
- Same ``fingerprint`` as that latest version: ``article.revised``, kind ``cosmetic``.
- Same fingerprint as an earlier version of that channel: kind ``revert``.
- Otherwise kind ``substantive``. A channel seen for the first time on a known article
  adds a version too (the article's text as that channel shows it), unless its exact
  text is already a version of the article.
- A tracker's version (one with ``source_observed_at``) whose fingerprint is that of a
  version of the same channel that a tracker saw at the same time (less than
  :data:`TRACKER_TIME_TOLERANCE` apart) adds nothing: it is that version, seen through
  a second tracker. The same text at another tracker time is still recorded (a revert).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapters.normalize import article_id, article_key, content_hash, fingerprint
from adapters.observation import Observation
from storage.events import (
    ArticleDiscovered,
    ArticleRevised,
    ArticleVersionEvent,
    DomainEvent,
)

_WORD = re.compile(r"\S+")
_COMPARED = ("title", "standfirst", "body", "url", "byline")

TRACKER_TIME_TOLERANCE = timedelta(minutes=1)
"""Two trackers' times of one version are the same time when less than this apart:
trackers show their times to the minute (News Sniffer's and NewsDiffs's pages) or may
carry seconds (a JSON view, a feed), so one moment can read 09:31 on one tracker and
09:31:45 on another."""


@dataclass(frozen=True, slots=True)
class KnownVersion:
    number: int
    channel: str
    content_hash: str
    fingerprint: str
    observed_at: datetime
    event: ArticleVersionEvent


@dataclass(frozen=True, slots=True)
class ArticleState:
    article_id: str
    stream_version: int = 0
    versions: tuple[KnownVersion, ...] = field(default_factory=tuple)

    def latest_in(self, channel: str) -> KnownVersion | None:
        return next((v for v in reversed(self.versions) if v.channel == channel), None)


@dataclass(frozen=True, slots=True)
class Identified:
    """An observation with its identity and hashes worked out."""

    observation: Observation
    article_key: str
    article_id: str
    content_hash: str
    fingerprint: str


Identity = tuple[str, str, str, str]  # article_key, article_id, content_hash, fingerprint


def identify(observation: Observation, *, relative_path: str | None = None) -> Identified:
    return Identified(observation, *identity(observation, relative_path=relative_path))


def identify_all(
    observations: Sequence[Observation], identities: Sequence[Identity] | None = None
) -> list[Identified]:
    """The observations identified; ``identities`` are theirs if worked out already
    (by a feed parser process, see ``daemon.feedwork``)."""
    if identities is None:
        return [identify(o) for o in observations]
    return [Identified(o, *ids) for o, ids in zip(observations, identities, strict=True)]


def identity(observation: Observation, *, relative_path: str | None = None) -> Identity:
    """What :func:`identify` works out, as plain strings (cheap to send between
    processes: a feed parser worker works them out beside the parse)."""
    obs = observation
    key = article_key(
        url=obs.url, guid=obs.guid, relative_path=relative_path, title=obs.title, body=obs.body
    )
    return (
        key,
        article_id(key),
        content_hash(obs.title, obs.standfirst, obs.body),
        fingerprint(obs.title, obs.standfirst, obs.body),
    )


def fold(article: str, history: Iterable[tuple[int, DomainEvent]]) -> ArticleState:
    """The state of one article from its stream: (stream_version, event) pairs."""
    state = ArticleState(article_id=article)
    for stream_version, event in history:
        state = evolve(state, event, stream_version)
    return state


def evolve(state: ArticleState, event: DomainEvent, stream_version: int) -> ArticleState:
    versions = state.versions
    if isinstance(event, ArticleVersionEvent):
        known = KnownVersion(
            number=len(versions) + 1,
            channel=event.channel,
            content_hash=event.content_hash,
            fingerprint=event.fingerprint,
            observed_at=event.observed_at,
            event=event,
        )
        versions = (*versions, known)
    return ArticleState(article_id=state.article_id, stream_version=stream_version,
                        versions=versions)  # fmt: skip


def decide(
    state: ArticleState,
    item: Identified,
    *,
    source_id: str,
    observed_at: datetime,
    previous_check_at: datetime | None = None,
) -> ArticleVersionEvent | None:
    """The event recording ``item``, or None when it adds nothing."""
    common = _fields(item, source_id=source_id, observed_at=observed_at)
    if not state.versions:
        return ArticleDiscovered(**common)
    channel = item.observation.channel
    if _seen_by_a_tracker(state, item):
        return None
    latest = state.latest_in(channel)
    if latest is None:
        if any(v.content_hash == item.content_hash for v in state.versions):
            return None
        latest = state.versions[-1]
    elif latest.content_hash == item.content_hash:
        return None
    kind, reverts_to = _kind(state, channel, latest, item.fingerprint)
    added, removed = diff_stats(_text(latest.event), _text_of(item.observation))
    return ArticleRevised(
        **common,
        kind=kind,
        changed_fields=_changed_fields(latest.event, item.observation),
        chars_added=added,
        chars_removed=removed,
        previous_version=latest.number,
        previous_check_at=_previous_check(item.observation, latest, previous_check_at),
        reverts_to_version=reverts_to,
    )


def _seen_by_a_tracker(state: ArticleState, item: Identified) -> bool:
    """Whether ``item``, a tracker's version, is already a version: same channel, same
    fingerprint, and a tracker time less than :data:`TRACKER_TIME_TOLERANCE` apart.

    Two trackers following one article list the same versions; the second one's must
    not be recorded again (as reverts: its first text is an earlier one's). The
    fingerprint, not the exact hash, because two trackers extract one page with
    different tools (quotes, spaces); the time, because the same text seen by a tracker
    later is a revert, which must be recorded."""
    seen = item.observation.source_observed_at
    if seen is None:
        return False
    channel = item.observation.channel
    return any(
        v.channel == channel
        and v.fingerprint == item.fingerprint
        and v.event.source_observed_at is not None
        and abs(v.event.source_observed_at - seen) < TRACKER_TIME_TOLERANCE
        for v in state.versions
    )


def _previous_check(
    obs: Observation, latest: KnownVersion, last_check: datetime | None
) -> datetime | None:
    """A time at which the previous text (``latest``'s) was still there: the edit
    happened after it. For storyline's own checks: the source's previous check, else
    when ``latest`` was recorded. A tracker's version was noticed at the tracker's time,
    and our checks of the tracker say nothing of when the article changed, so the bound
    is when the previous text was seen (the tracker's time if it is a tracker's
    version), or None if that is after the tracker saw this text (unknown: a 2017
    history compared with a text storyline recorded in 2026)."""
    if obs.source_observed_at is None:
        return last_check or latest.observed_at
    seen = latest.event.source_observed_at or latest.observed_at
    return seen if seen <= obs.source_observed_at else None


def idempotency_key(source_id: str, item: Identified, after_version: int) -> str:
    """Re-offering the same text after the same known version is the same event."""
    raw = f"{source_id}|{item.article_key}|{item.content_hash}|{after_version}"
    return "article:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()


def diff_stats(old: str, new: str) -> tuple[int, int]:
    """Characters added and removed, counted over a word-level diff."""
    old_words, new_words = _WORD.findall(old), _WORD.findall(new)
    matcher = difflib.SequenceMatcher(None, old_words, new_words, autojunk=False)
    added = removed = 0
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op in ("replace", "delete"):
            removed += sum(len(w) for w in old_words[a1:a2])
        if op in ("replace", "insert"):
            added += sum(len(w) for w in new_words[b1:b2])
    return added, removed


def _kind(
    state: ArticleState, channel: str, latest: KnownVersion, print_: str
) -> tuple[str, int | None]:
    if latest.fingerprint == print_:
        return "cosmetic", None
    earlier = [v for v in state.versions if v.channel == channel and v is not latest]
    match = next((v for v in reversed(earlier) if v.fingerprint == print_), None)
    if match is not None:
        return "revert", match.number
    return "substantive", None


def _fields(item: Identified, *, source_id: str, observed_at: datetime) -> dict[str, Any]:
    obs = item.observation
    return {
        "article_id": item.article_id,
        "article_key": item.article_key,
        "channel": obs.channel,
        "source_id": source_id,
        "title": obs.title,
        "standfirst": obs.standfirst,
        "body": obs.body,
        "url": obs.url,
        "byline": obs.byline,
        "published_at": obs.published_at,
        "content_hash": item.content_hash,
        "fingerprint": item.fingerprint,
        "observed_at": observed_at,
        "source_name": obs.source_name,
        "source_version": obs.source_version,
        "source_observed_at": obs.source_observed_at,
    }


def _changed_fields(old: ArticleVersionEvent, new: Observation) -> tuple[str, ...]:
    return tuple(name for name in _COMPARED if getattr(old, name) != getattr(new, name))


def _text(event: ArticleVersionEvent) -> str:
    return "\n".join((event.title, event.standfirst or "", event.body))


def _text_of(obs: Observation) -> str:
    return "\n".join((obs.title, obs.standfirst or "", obs.body))
