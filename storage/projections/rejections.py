"""``rejections``: every input that was refused, why, and where it was kept."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert

from storage.events import InputRejected
from storage.schema import rejections
from storage.store import StoredEvent


class RejectionsProjection:
    name = "rejections"
    event_types = frozenset({InputRejected.event_type})

    def apply(self, conn: Connection, batch: Sequence[StoredEvent]) -> None:
        rows = []
        for stored in batch:
            event = stored.decode()
            assert isinstance(event, InputRejected)
            rows.append(
                {
                    "position": stored.position,
                    "input": event.input,
                    "reason": event.reason,
                    "message": event.message,
                    "kept_at": event.kept_at,
                    "content_sha256": event.content_sha256,
                    "recorded_at": stored.recorded_at,
                }
            )
        if rows:
            conn.execute(insert(rejections), rows)
