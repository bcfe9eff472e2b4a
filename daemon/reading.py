"""Reading history back: word-level diffs between versions, and the text as of a time."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

_TOKEN = re.compile(r"\s+|[^\s]+")


def version_text(version: dict[str, Any]) -> str:
    parts = [version["title"], version.get("standfirst") or "", version["body"]]
    return "\n\n".join(p for p in parts if p)


def word_diff(old: str, new: str) -> Iterator[tuple[str, str]]:
    """(op, text) pieces: op is ' ' (same), '-' (removed) or '+' (added)."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            yield " ", "".join(a[a1:a2])
            continue
        if a1 < a2:
            yield "-", "".join(a[a1:a2])
        if b1 < b2:
            yield "+", "".join(b[b1:b2])


def render_diff(pieces: Sequence[tuple[str, str]], *, colour: bool) -> str:
    """Coloured on a terminal (red removed, green added); plain [-..-] {+..+} otherwise."""
    out = []
    for op, text in pieces:
        if op == " ":
            out.append(text)
        elif colour:
            code = "31;9" if op == "-" else "32"
            out.append(f"\x1b[{code}m{text}\x1b[0m")
        else:
            out.append(f"[-{text}-]" if op == "-" else f"{{+{text}+}}")
    return "".join(out)


def as_of(versions: Sequence[dict[str, Any]], moment: datetime) -> dict[str, Any] | None:
    """The version current at ``moment``: valid_from <= moment < valid_to (or valid_to
    NULL), the as-of query of docs/schema.md. Intervals do not overlap, so at most one
    version matches; a zero-length interval (a tie, see the articles projection) never
    does."""
    for version in versions:
        start, end = version["valid_from"], version["valid_to"]
        if start <= moment and (end is None or moment < end):
            return version
    return None
