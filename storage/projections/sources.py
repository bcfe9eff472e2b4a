"""``source_config``: the sources as configured (the ``sources`` view adds their state)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete, insert, update

from storage.events import SourceAdded, SourceChanged, SourceRemoved
from storage.schema import source_config
from storage.store import StoredEvent


class SourcesProjection:
    name = "sources"
    event_types = frozenset(
        {SourceAdded.event_type, SourceChanged.event_type, SourceRemoved.event_type}
    )

    def apply(self, conn: Connection, batch: Sequence[StoredEvent]) -> None:
        for stored in batch:
            event = stored.decode()
            where = source_config.c.source_id == getattr(event, "source_id", None)
            if isinstance(event, SourceAdded):
                conn.execute(delete(source_config).where(where))
                conn.execute(
                    insert(source_config).values(
                        source_id=event.source_id, kind=event.kind, url=event.url,
                        name=event.name, settings=event.settings, origin=event.origin,
                        removed=0, added_at=stored.recorded_at,
                    )
                )  # fmt: skip
            elif isinstance(event, SourceChanged):
                values = {"name": event.name, "settings": event.settings}
                conn.execute(update(source_config).where(where).values(values))
            elif isinstance(event, SourceRemoved):
                conn.execute(update(source_config).where(where).values(removed=1))
