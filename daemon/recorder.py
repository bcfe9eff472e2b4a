"""From identified observations to the events that record them, for any channel.

Reads the article streams concerned, lets the domain rules decide per observation
(folding the batch in order, so two versions of one article in one batch are both
recorded), and returns the events to append. Used by the inbox and by the poller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from daemon import faults
from daemon.ingest import ArticleState, Identified, decide, evolve, fold, idempotency_key
from storage.blobs import Blob
from storage.errors import ConcurrencyError
from storage.events import ArticleDiscovered
from storage.store import AppendResult, EventStore, NewEvent

_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Pending:
    item: Identified
    source_id: str
    metadata: dict[str, Any]
    previous_check_at: datetime | None = None


@dataclass(slots=True)
class Plan:
    events: list[NewEvent] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)  # new | revised | unchanged, per item

    def count(self, outcome: str) -> int:
        return self.outcomes.count(outcome)


def plan(store: EventStore, pending: Sequence[Pending], now: datetime) -> Plan:
    streams = store.read_streams(p.item.article_id for p in pending)
    states: dict[str, ArticleState] = {
        aid: fold(aid, ((e.stream_version, e.decode()) for e in history))
        for aid, history in streams.items()
    }
    result = Plan()
    for p in pending:
        aid = p.item.article_id
        state = states.get(aid) or ArticleState(article_id=aid)
        event = decide(
            state, p.item, source_id=p.source_id, observed_at=now,
            previous_check_at=p.previous_check_at,
        )  # fmt: skip
        if event is None:
            result.outcomes.append("unchanged")
            continue
        version = state.stream_version + 1
        states[aid] = evolve(state, event, version)
        result.outcomes.append("new" if isinstance(event, ArticleDiscovered) else "revised")
        result.events.append(
            NewEvent(
                stream_id=aid,
                stream_version=version,
                idempotency_key=idempotency_key(p.source_id, p.item, version - 1),
                event=event,
                occurred_at=p.item.observation.published_at,
                metadata=p.metadata,
            )
        )
    return result


def record(
    store: EventStore,
    pending: Sequence[Pending],
    now: datetime,
    *,
    blobs: Sequence[Blob] = (),
    extra: Sequence[NewEvent] = (),
) -> tuple[Plan, AppendResult | None]:
    """Plan and append in one go; if another writer moved one of the streams in between
    (two feeds carrying one article), plan again from the new state."""
    for attempt in range(1, _ATTEMPTS + 1):
        result = plan(store, pending, now)
        batch = [*result.events, *extra]
        if not batch:
            return result, None
        used = {e.metadata.get("raw_sha256") for e in result.events}
        try:
            faults.crash_point("before_commit")
            appended = store.append(batch, [b for b in blobs if b.sha256 in used])
            faults.crash_point("after_commit_before_move")
            return result, appended
        except ConcurrencyError:
            if attempt == _ATTEMPTS:
                raise
    raise AssertionError("unreachable")
