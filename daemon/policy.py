"""When to check a source next. Pure functions of what the last check saw.

- Feeds: 7 days / entries published in the last week, clamped to [min, max]; only ever
  lengthened by what the server asks (<ttl>, Cache-Control max-age, Expires,
  Retry-After).
- Pages and changelogs: decay. After a change, ``page_first_interval``; each unchanged
  check multiplies the interval by ``page_growth`` up to ``page_max_interval``; after
  ``quiet_days`` without a change, tracking stops (a visible, reversible state).
- Failures: ``backoff_base * 2^(failures-1)`` up to ``backoff_cap``, never less than a
  Retry-After; a failing source is retried forever, only HTTP 410 retires it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

WEEK = 7 * 86400.0
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)", re.IGNORECASE)
# A server hint longer than this is ignored rather than obeyed (a typo must not silence
# a source for a year).
_HINT_CEILING = 7 * 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    min_interval: float = 300.0
    max_interval: float = 86400.0
    backoff_base: float = 300.0
    backoff_cap: float = 86400.0
    page_first_interval: float = 1200.0
    page_growth: float = 1.2
    page_max_interval: float = 86400.0
    quiet_days: float = 40.0


def feed_interval(
    policy: Policy, published: Sequence[datetime], now: datetime, server_hint: float | None
) -> float:
    recent = [d for d in published if now - timedelta(days=7) <= d <= now]
    interval = WEEK / len(recent) if recent else policy.max_interval
    interval = min(max(interval, policy.min_interval), policy.max_interval)
    return max(interval, server_hint or 0.0)


def page_interval(policy: Policy, previous: float | None, changed: bool) -> float:
    if changed or previous is None:
        return policy.page_first_interval
    return min(previous * policy.page_growth, policy.page_max_interval)


def tracking_stopped(policy: Policy, last_change_at: datetime | None, now: datetime) -> bool:
    return last_change_at is not None and now - last_change_at >= timedelta(days=policy.quiet_days)


def backoff(policy: Policy, failures: int, retry_after: float | None) -> float:
    doublings = min(max(failures - 1, 0), 40)  # 2**40 is far past any cap; no overflow
    delay = min(policy.backoff_base * 2**doublings, policy.backoff_cap)
    return max(delay, min(retry_after or 0.0, _HINT_CEILING))


def server_hint(
    headers: Mapping[str, str], now: datetime, ttl_seconds: float | None = None
) -> float | None:
    """The longest wait the server asked for: <ttl>, max-age, Expires, Retry-After."""
    hints = [float(ttl_seconds)] if ttl_seconds else []
    match = _MAX_AGE.search(headers.get("cache-control", ""))
    if match:
        hints.append(float(match.group(1)))
    expires = _http_date(headers.get("expires"))
    if expires is not None:
        hints.append((expires - now).total_seconds())
    retry = headers.get("retry-after", "")
    if retry.strip().isdigit():
        hints.append(float(retry))
    hints = [h for h in hints if 0 < h <= _HINT_CEILING]
    return max(hints) if hints else None


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else None
