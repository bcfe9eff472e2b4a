"""What the daemon's feed parser processes run for each fetched feed: the parse, then
each entry's identity (a canonical URL, a UUID and two hashes of its text). Doing that
here keeps its CPU work out of the polling process, whose threads share one GIL with
its database writer."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from adapters.feed import build_result, extract_feed
from daemon.ingest import identity


def extract_and_identify(body: bytes, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """:func:`adapters.feed.extract_feed`, plus ``annotations``: the identity of each
    observation that :func:`adapters.feed.build_result` will make of its output."""
    raw = extract_feed(body, url, headers)
    # Anything raised here is met again in the polling process, which reports it: an
    # UnusableInput as a failed check, a bug with its traceback.
    with contextlib.suppress(Exception):
        raw["annotations"] = [identity(o) for o in build_result(raw, url=url).observations]
    return raw
