"""Plain-text files from the inbox: bytes in, one :class:`Observation` out. Pure.

Decoding, in order: a byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32) decides; otherwise
NUL bytes mean ``binary``; otherwise strict UTF-8 (the fast path); otherwise Windows-1252
if the result looks like Western European text (only Latin letters and typographic
punctuation outside ASCII, and few of them); otherwise charset_normalizer's best guess.
We try cp1252 before charset_normalizer because on short news texts the latter often
picks an East Asian or Baltic code page for a few curly quotes and accents. Line endings
(CRLF, lone CR) become ``\\n``.

Structure of an ordinary file:

* An optional header block at the very top: ``Key: value`` lines (Title, URL, Source,
  Published, Byline/Author, Standfirst; keys case-insensitive) ended by a blank line.
  The block counts only if *every* line in it is a known key, so a first line such as
  "Press release: Foreign Secretary to visit Moscow" stays a title. Header values
  override guesses. ``Published`` is ISO-8601 or RFC 2822, read as aware UTC (naive
  means UTC); an unreadable date is kept in ``extra["published_raw"]``.
* Every non-empty line is a paragraph (blank lines between paragraphs are optional).
  The first paragraph is the title (for ``.md`` files without its ``#`` marks).
* Standfirst rule: when the title was guessed (no ``Title:`` header), the second
  paragraph is the standfirst if the title does not end with a full stop (a title that
  is itself a sentence is a lede, as in a wire story), the second paragraph is shorter
  than 300 characters and holds one sentence, and at least one body paragraph follows.
* The body is the remaining paragraphs, stripped, joined by a blank line.

News Sniffer text dumps (a preamble "This article is from the source 'X' ..." and "You
can find the current article at its original source at URL") give ``url``,
``source_name`` and ``extra["tracker"]`` / ``extra["versions_seen"]``. Their title line
holds both compared versions side by side: identical halves give one title; different
ones give the right-hand (newer) title only when it starts with the same two words as
the line and does so at exactly one place, else the whole line. Limitation: the dump's
body paragraphs mix both columns and are kept as they are, minus "(... later)" notes.
"""

from __future__ import annotations

import codecs
import email.utils
import re
from collections.abc import Callable
from datetime import UTC, datetime

import charset_normalizer

from adapters.errors import UnusableInput
from adapters.observation import Observation

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_LATIN_LETTERS = "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿŒœŠšŽžŸ"
_WESTERN = frozenset(_LATIN_LETTERS + "‘’‚“”„–—…•€£¥¢©®™°±·«»¡¿§½¼¾\xa0")
# C0 controls other than tab and line breaks, and DEL
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F])
_HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z -]{0,30}):\s(.*)$")
_HEADER_KEYS = {
    "title": "title",
    "url": "url",
    "source": "source_name",
    "published": "published",
    "byline": "byline",
    "author": "byline",
    "standfirst": "standfirst",
}
_SENTENCE_BREAK = re.compile(r"[.!?][’”\"')]*\s+[\"“‘'(]*[A-Z0-9]")
_NS_SOURCE = re.compile(r"^This article is from the source '([^']*)'")
_NS_URL = re.compile(r"^You can find the current article at its original source at (\S+)")
_NS_CHANGED = re.compile(r"^The article has changed (\d+) times?\b")
_NS_VERSIONS = re.compile(r"^Version \S+ Version \S+$")
_NS_TIME_NOTE = re.compile(r"^\([^()]*\blater\)$")


def parse_text_file(data: bytes, *, name: str) -> Observation:
    """The observation in one inbox file; ``name`` is its path relative to the inbox."""
    lines = decode_text(data, name=name).split("\n")
    if _is_newssniffer_dump(lines):
        return _parse_newssniffer_dump(lines, name)
    return _parse_plain(lines, name)


def decode_text(data: bytes, *, name: str) -> str:
    """The file's text with ``\\n`` line endings, or :class:`UnusableInput`."""
    text = _decode(data, name) if data else ""
    if not text.strip():
        raise _unusable("empty", name, "is empty or holds only whitespace")
    if _control_codes(text) * 20 > len(text):
        raise _unusable("undecodable", name, "decodes to text that is mostly control codes")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _control_codes(text: str) -> int:
    """How many characters of ``text`` are control codes (``_CONTROL_BYTES``), counted at C
    speed: in UTF-8 each of them is the one byte of the same value, and no other
    character's bytes fall below 0x80."""
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw) - len(raw.translate(None, _CONTROL_BYTES))


def _decode(data: bytes, name: str) -> str:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _decode_strict(data, codec, name)
    if b"\x00" in data:
        raise _unusable("binary", name, "contains NUL bytes and has no UTF-16 byte-order mark")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _detect(data, name)


def _decode_strict(data: bytes, codec: str, name: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _unusable("undecodable", name, f"is not valid {codec} despite its BOM") from exc


def _detect(data: bytes, name: str) -> str:
    western = _as_western(data)
    if western is not None:
        return western
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise _unusable("undecodable", name, "cannot be decoded as text in any known encoding")
    return str(best)


def _as_western(data: bytes) -> str | None:
    """The cp1252 reading, if it is plausible Western European text."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    non_ascii = [c for c in text if c > "\x7f"]
    if not all(c in _WESTERN for c in non_ascii):
        return None
    accented = sum(c.isalpha() for c in non_ascii)
    return text if accented * 4 <= sum(c.isalpha() for c in text) else None


def _parse_plain(lines: list[str], name: str) -> Observation:
    header, rest = _split_header(lines)
    paragraphs = [line.strip() for line in rest if line.strip()]
    title = header.get("title") or _guessed_title(paragraphs, name)
    standfirst = header.get("standfirst")
    published_at, extra = _published(header.get("published"))
    if "title" not in header and standfirst is None and _has_standfirst(title, paragraphs):
        standfirst = paragraphs.pop(0)
    return Observation(
        title=title,
        body="\n\n".join(paragraphs),
        standfirst=standfirst,
        url=header.get("url"),
        source_name=header.get("source_name"),
        byline=header.get("byline"),
        published_at=published_at,
        channel="file",
        extra=extra,
    )


def _split_header(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """The top ``Key: value`` block as fields (empty if any line is not one) and the rest."""
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    found: dict[str, str] = {}
    end = start
    for end in range(start, len(lines) + 1):
        if end == len(lines) or not lines[end].strip():
            break
        field = _header_field(lines[end])
        if field is None:
            return {}, lines  # most files: their first line is already not a field
        if field[1]:
            found[field[0]] = field[1]
    if end == start:
        return {}, lines
    return found, lines[end:]


def _header_field(line: str) -> tuple[str, str] | None:
    match = _HEADER_LINE.match(line)
    key = _HEADER_KEYS.get(match.group(1).strip().lower()) if match else None
    return (key, match.group(2).strip()) if key and match else None


def _guessed_title(paragraphs: list[str], name: str) -> str:
    if not paragraphs:
        raise _unusable("no-title", name, "has no non-empty line to use as a title")
    title = paragraphs.pop(0)
    if name.lower().endswith((".md", ".markdown")):
        title = title.lstrip("#").strip() or title
    return title


def _has_standfirst(title: str, paragraphs: list[str]) -> bool:
    if len(paragraphs) < 2 or title.endswith("."):
        return False
    return len(paragraphs[0]) < 300 and not _SENTENCE_BREAK.search(paragraphs[0])


def _published(raw: str | None) -> tuple[datetime | None, dict[str, str]]:
    """``raw`` as an aware UTC date, or kept as ``extra["published_raw"]`` if unreadable."""
    if raw is None:
        return None, {}
    for parse in (datetime.fromisoformat, email.utils.parsedate_to_datetime):
        moment = _try_date(parse, raw)
        if moment is not None:
            return moment, {}
    return None, {"published_raw": raw}


def _try_date(parse: Callable[[str], datetime], raw: str) -> datetime | None:
    try:
        moment = parse(raw)
    except (ValueError, TypeError, IndexError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _is_newssniffer_dump(lines: list[str]) -> bool:
    first = next((line.strip() for line in lines if line.strip()), "")
    return bool(_NS_SOURCE.match(first)) and any(_NS_URL.match(line) for line in lines)


def _parse_newssniffer_dump(lines: list[str], name: str) -> Observation:
    stripped = [line.strip() for line in lines]
    content = [
        line
        for line in stripped[_newssniffer_content_start(stripped) :]
        if line and not _NS_TIME_NOTE.match(line)
    ]
    if not content:
        raise _unusable("no-title", name, "is a News Sniffer dump with no article title")
    return Observation(
        title=_one_title(content[0]),
        body="\n\n".join(content[1:]),
        url=_first_group(_NS_URL, stripped),
        source_name=_first_group(_NS_SOURCE, stripped),
        channel="file",
        extra=_newssniffer_extra(stripped),
    )


def _newssniffer_content_start(lines: list[str]) -> int:
    """The line after "Version X Version Y", else after the last preamble line."""
    for i, line in enumerate(lines):
        if _NS_VERSIONS.match(line):
            return i + 1
    preamble = (_NS_SOURCE, _NS_URL, _NS_CHANGED)
    return 1 + max(i for i, line in enumerate(lines) if any(p.match(line) for p in preamble))


def _newssniffer_extra(lines: list[str]) -> dict[str, str]:
    extra = {"tracker": "newssniffer"}
    changed = _first_group(_NS_CHANGED, lines)
    if changed is not None:
        extra["versions_seen"] = changed
    return extra


def _first_group(pattern: re.Pattern[str], lines: list[str]) -> str | None:
    return next((m.group(1) for m in map(pattern.match, lines) if m), None)


def _one_title(line: str) -> str:
    """One title from a line holding two versions' titles side by side."""
    half = len(line) // 2
    if len(line) % 2 == 1 and line[half] == " " and line[:half] == line[half + 1 :]:
        return line[:half]
    words = line.split()
    if len(words) < 4:
        return line
    starts = [m.start() for m in re.finditer(re.escape(" " + " ".join(words[:2]) + " "), line)]
    return line[starts[0] + 1 :] if len(starts) == 1 else line


def _unusable(reason: str, name: str, what: str) -> UnusableInput:
    return UnusableInput(reason, f"The file {name!r} {what}.")
