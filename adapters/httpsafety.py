"""Pure helpers of the HTTP client: address classification, Retry-After, capped decoding."""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Blocked on top of the ipaddress flags (is_private etc.), which miss CGNAT in 3.11.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10", "0.0.0.0/8")
)


class BodyDecodeError(ValueError):
    """The body's Content-Encoding is unknown or its compressed data is corrupt."""


def in_networks(address: str, networks: Iterable[IPNetwork]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    return any(ip.version == net.version and ip in net for net in networks)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait, from delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def is_blocked_address(address: str) -> bool:
    """True for loopback, private, link-local, CGNAT, ULA, multicast, reserved addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    flags = (ip.is_loopback, ip.is_private, ip.is_link_local, ip.is_multicast)
    if any(flags) or ip.is_unspecified or ip.is_reserved:
        return True
    return in_networks(str(ip), _BLOCKED_NETWORKS)


class CappedDecoder:
    """Content-Encoding decoding with a cap: never inflates more than ``limit`` bytes."""

    def __init__(self, encodings: list[str]) -> None:
        self._chain: list[Any] = []
        for name in reversed(encodings):  # the last encoding applied is undone first
            if name in ("gzip", "x-gzip"):
                self._chain.append(zlib.decompressobj(zlib.MAX_WBITS | 32))
            elif name == "deflate":
                self._chain.append(None)  # zlib-wrapped or raw: decided on the first bytes
            elif name != "identity":
                raise BodyDecodeError(f"unsupported Content-Encoding {name!r}")

    def decode(self, data: bytes, limit: int) -> bytes:
        if not data:
            return data
        for i, step in enumerate(self._chain):
            if step is None:
                step = self._chain[i] = _deflate_for(data)
            try:
                data = step.decompress(data, limit + 1)
            except zlib.error as exc:
                raise BodyDecodeError(f"undecodable body: {exc}") from exc
            if step.unconsumed_tail:  # more output than the cap allows
                return data + b"\0"  # one byte past limit: the caller refuses it
        return data

    def finish(self) -> None:
        """Refuse a compressed body that ended before its compressed stream did."""
        for step in self._chain:
            if step is not None and not step.eof:
                raise BodyDecodeError("compressed body ended early (truncated)")


def _deflate_for(first: bytes) -> Any:
    """HTTP "deflate" should be zlib-wrapped; some servers send raw deflate."""
    zlib_header = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
    return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
