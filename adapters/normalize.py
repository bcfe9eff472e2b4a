"""Identity and change detection rules that every channel shares. Pure functions."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ARTICLE_NAMESPACE = uuid.UUID("5b1c7f1e-3c2a-4f7e-9a55-0d6c7a3e2b10")

_TRACKING_PARAMS = {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid"}

# Punctuation variants folded for the fingerprint: a change between two members of one
# class is cosmetic, not substantive.
_FOLD = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u00ab": '"', "\u00bb": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
        "\u2015": "-", "\u2212": "-",
        "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u200b": "",
        "\ufeff": "",
    }
)  # fmt: skip
_PUNCT = ",.;:!?)]"  # a space before these is cosmetic
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.;:!?)\]])")
_MARKS_TO_NUL = bytes.maketrans(_PUNCT.encode(), b"\0" * len(_PUNCT))


_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def http_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be fetched, or None: only http and https URLs with a valid
    host (a name, IDNA allowed, or an IP address) and port are."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be http or https"
    host = parts.hostname
    if not host or not _valid_host(host):
        return "has no valid host"
    return None


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return False
    name = name.removesuffix(".")  # a fully qualified name
    return len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no fragment, no default port, no tracking params."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in _TRACKING_PARAMS
    ]
    path = parts.path or "/"
    return urlunsplit((scheme, host, path, urlencode(query), ""))


def article_key(
    *,
    url: str | None = None,
    guid: str | None = None,
    relative_path: str | None = None,
    title: str = "",
    body: str = "",
) -> str:
    """The stable identity of an article, by the first rule that applies."""
    if url:
        return canonical_url(url)
    if guid:
        return f"guid:{guid.strip()}"
    if relative_path:
        return f"file:{relative_path}"
    return "sha256:" + sha256_text(title + "\n" + body)


def article_id(key: str) -> str:
    return str(uuid.uuid5(ARTICLE_NAMESPACE, key))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(title: str, standfirst: str | None, body: str) -> str:
    """Hash of the exact extracted text: any change at all changes it."""
    return sha256_text("\x1f".join((title, standfirst or "", body)))


def normalize_text(text: str) -> str:
    """Text with cosmetic differences removed: NFKC, folded punctuation, one space."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_FOLD)
    text = " ".join(text.split())
    # Most texts have no space before a mark: find out at C speed on the bytes (marks
    # are ASCII, and no other character's UTF-8 bytes are), and skip the regex.
    if b" \0" not in text.encode("utf-8", "surrogatepass").translate(_MARKS_TO_NUL):
        return text
    # one pass; the same as replacing " " + mark by mark for each mark in turn, since
    # after the join no space follows another
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def fingerprint(title: str, standfirst: str | None, body: str) -> str:
    """Hash of the normalized text: equal fingerprints mean a cosmetic difference."""
    return sha256_text("\x1f".join(normalize_text(t) for t in (title, standfirst or "", body)))
