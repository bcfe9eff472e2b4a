"""The one shape every adapter returns: what was seen of one article, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One observed version of one article, as an adapter extracted it.

    Adapters fill in what the input says; identity (``article_key``) and hashes are
    derived later by :mod:`adapters.normalize`, so every channel agrees on them.
    """

    title: str
    body: str  # paragraphs joined by a blank line
    standfirst: str | None = None
    url: str | None = None  # the article's own URL, if the input names it
    source_name: str | None = None  # publisher or tracker label ("guardian")
    published_at: datetime | None = None  # aware UTC
    updated_at: datetime | None = None  # aware UTC
    byline: str | None = None
    guid: str | None = None  # feed entry id, if any
    channel: str = "file"  # file | feed | changelog | page
    source_version: str | None = None  # a tracker's own version label
    source_observed_at: datetime | None = None  # when the tracker saw that version
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def paragraphs(self) -> list[str]:
        return [p for p in self.body.split("\n\n") if p]
