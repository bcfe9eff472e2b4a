"""Refuse XML documents whose prolog could make a parser expand or fetch entities.

Runs before feedparser (RELIABILITY decision 9): billion laughs, quadratic blowup and
external entities or DTDs are stopped by reading only the head of the document, with no
XML parser involved. Pure; stdlib only.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping

from adapters.errors import UnusableInput

_HEAD_BYTES = 64 * 1024
_FIRST_ELEMENT = re.compile(r"<[A-Za-z_:]")
_PROLOG_SKIP = re.compile(r"\ufeff|\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_DOCTYPE = re.compile(r"<!DOCTYPE", re.IGNORECASE)
_ENTITY = re.compile(r"<!ENTITY", re.IGNORECASE)
_EXTERNAL_ID = re.compile(r"<!DOCTYPE\s+[^\s\[>]+\s+(SYSTEM|PUBLIC)\b", re.IGNORECASE)
# RSS 0.91 feeds name Netscape's DTD. Expat never fetches it and feedparser strips the
# DOCTYPE, so this one public identifier is let through (without any ENTITY).
_NETSCAPE_RSS = re.compile(r'PUBLIC\s+"-//Netscape Communications//DTD RSS 0\.91//EN"')
_XML_ENCODING = re.compile(r"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)""")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)
_SNIFF = (  # byte order marks first, then the "<?" of an unmarked UTF-16/32 document
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (b"<\0\0\0", "utf-32-le"),
    (b"\0\0\0<", "utf-32-be"),
    (b"<\0", "utf-16-le"),
    (b"\0<", "utf-16-be"),
)


def check_prolog(body: bytes, headers: Mapping[str, str] | None = None) -> None:
    """Raise UnusableInput("xml-entities") for a DOCTYPE declaring entities or naming a DTD.

    The head is read in every encoding the parsers might use (BOM/sniffed, the XML
    declaration's, the HTTP charset), so a UTF-7 or UTF-16 prolog cannot hide one.
    """
    head = body[:_HEAD_BYTES]
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    for encoding in _candidate_encodings(head, lowered):
        text = _decode(head, encoding)
        if len(body) > _HEAD_BYTES and not _FIRST_ELEMENT.search(text):
            raise UnusableInput(
                "xml-entities", "no element within the first 64 KiB: the prolog is refused"
            )
        _refuse_dangerous(_before_first_element(text))  # what feedparser calls the head
        doctype = _doctype(text)  # what expat reads, comments and literals understood
        if doctype == "":
            raise UnusableInput("xml-entities", "DOCTYPE not closed within 64 KiB: refused")
        if doctype:
            _refuse_dangerous(doctype)


def _candidate_encodings(head: bytes, headers: Mapping[str, str]) -> list[str]:
    sniffed = next((name for mark, name in _SNIFF if head.startswith(mark)), "latin-1")
    candidates = [sniffed]
    declared = _XML_ENCODING.search(_decode(head, sniffed))
    charset = _CHARSET.search(headers.get("content-type", ""))
    for match in (declared, charset):
        if match and _known_codec(match.group(1)):
            candidates.append(match.group(1))
    return candidates


def _known_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _decode(head: bytes, encoding: str) -> str:
    return head.decode(encoding, errors="replace")


def _before_first_element(text: str) -> str:
    match = _FIRST_ELEMENT.search(text)
    return text[: match.start()] if match else text


def _doctype(text: str) -> str | None:
    """The DOCTYPE declaration of the prolog; None if there is none, "" if unterminated."""
    pos = 0
    while (skip := _PROLOG_SKIP.match(text, pos)) and skip.end() > pos:
        pos = skip.end()
    if not _DOCTYPE.match(text, pos):
        return None
    end = _declaration_end(text, pos + len("<!DOCTYPE"))
    return text[pos:end] if end else ""


def _declaration_end(text: str, pos: int) -> int:
    """Index after the ">" closing a declaration, skipping literals, subset and comments."""
    quote, depth = "", 0
    while pos < len(text):
        char = text[pos]
        if quote:
            quote = "" if char == quote else quote
        elif text.startswith("<!--", pos):
            pos = text.find("-->", pos + 4)
            if pos < 0:
                return 0
            pos += 2
        elif char in "\"'":
            quote = char
        elif char in "[]":
            depth += 1 if char == "[" else -1
        elif char == ">" and depth <= 0:
            return pos + 1
        pos += 1
    return 0


def _refuse_dangerous(prolog: str) -> None:
    if _ENTITY.search(prolog):
        raise UnusableInput("xml-entities", "document declares XML entities: refused")
    external = _EXTERNAL_ID.search(prolog)
    if external and not _NETSCAPE_RSS.search(prolog):
        raise UnusableInput(
            "xml-entities", f"DOCTYPE names an external DTD ({external.group(1)}): refused"
        )
