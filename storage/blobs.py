"""Raw captures, content-addressed by SHA-256 and compressed.

Compression happens before the append transaction (no CPU work under the write lock);
the rows are inserted inside it so an event never points at a missing blob.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

from sqlalchemy import Connection, select

from storage.schema import blobs


@dataclass(frozen=True, slots=True)
class Blob:
    sha256: str
    size: int
    encoding: str
    data: bytes

    @classmethod
    def of(cls, raw: bytes) -> Blob:
        packed = zlib.compress(raw, 6)
        if len(packed) < len(raw):
            return cls(hashlib.sha256(raw).hexdigest(), len(raw), "zlib", packed)
        return cls(hashlib.sha256(raw).hexdigest(), len(raw), "identity", raw)

    def raw(self) -> bytes:
        return zlib.decompress(self.data) if self.encoding == "zlib" else self.data


def load_blob(conn: Connection, sha256: str) -> bytes | None:
    row = conn.execute(
        select(blobs.c.sha256, blobs.c.size, blobs.c.encoding, blobs.c.data).where(
            blobs.c.sha256 == sha256
        )
    ).first()
    return Blob(row.sha256, row.size, row.encoding, bytes(row.data)).raw() if row else None
