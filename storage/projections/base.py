"""What a projection is: a name, its tables, and a function applying events to them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import Connection

from storage.store import StoredEvent


class Projection(Protocol):
    name: str
    event_types: frozenset[str]

    def apply(self, conn: Connection, batch: Sequence[StoredEvent]) -> None:
        """Apply events (already filtered to ``event_types``) inside the caller's
        transaction; the runner writes the checkpoint in the same one."""
