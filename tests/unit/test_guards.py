"""Body and prolog guards the review found gaps in."""

from __future__ import annotations

import gzip

import pytest

from adapters.errors import UnusableInput
from adapters.httpsafety import BodyDecodeError, CappedDecoder
from adapters.xmlguard import check_prolog


def test_an_entity_hidden_after_a_long_comment_is_refused() -> None:
    body = (
        b'<?xml version="1.0"?><!--' + b"x" * 70_000 + b'--><!DOCTYPE r [<!ENTITY a "b">]>'
        b"<rss><channel><title>&a;</title></channel></rss>"
    )
    with pytest.raises(UnusableInput) as caught:
        check_prolog(body)
    assert caught.value.reason == "xml-entities"


def test_a_long_but_ordinary_feed_passes() -> None:
    body = b'<?xml version="1.0"?><rss><channel>' + b"<item>x</item>" * 10_000 + b"</channel></rss>"
    check_prolog(body)


def test_a_truncated_gzip_body_is_refused_not_taken_as_a_shorter_text() -> None:
    whole = gzip.compress(b"<rss>" + b"word " * 20_000 + b"</rss>")
    decoder = CappedDecoder(["gzip"])
    decoder.decode(whole[: len(whole) // 2], 10_000_000)
    with pytest.raises(BodyDecodeError, match="ended early"):
        decoder.finish()


def test_a_complete_gzip_body_finishes_cleanly() -> None:
    decoder = CappedDecoder(["gzip"])
    assert decoder.decode(gzip.compress(b"<rss/>"), 1000) == b"<rss/>"
    decoder.finish()
