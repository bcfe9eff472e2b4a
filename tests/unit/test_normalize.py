from __future__ import annotations

import pytest

from adapters.normalize import (
    article_id,
    article_key,
    canonical_url,
    fingerprint,
    http_url_problem,
)


def test_canonical_url_drops_tracking_fragment_and_default_port() -> None:
    url = "HTTPS://WWW.Example.com:443/a/b?utm_source=x&id=3&fbclid=y#comments"
    assert canonical_url(url) == "https://www.example.com/a/b?id=3"


def test_article_key_prefers_url_then_guid_then_path_then_content() -> None:
    assert article_key(url="http://x.org/a#f", guid="g", relative_path="p") == "http://x.org/a"
    assert article_key(guid="g", relative_path="p") == "guid:g"
    assert article_key(relative_path="p.txt") == "file:p.txt"
    assert article_key(title="t", body="b").startswith("sha256:")


def test_article_id_is_stable_for_equivalent_urls() -> None:
    a = article_key(url="http://x.org/a?utm_medium=rss")
    b = article_key(url="http://X.org/a")
    assert article_id(a) == article_id(b)


def test_fingerprint_ignores_quote_dash_and_space_variants_only() -> None:
    base = fingerprint("T", None, 'He said "yes" - twice.')
    assert fingerprint("T", None, "He  said \u201cyes\u201d \u2013 twice .") == base
    assert fingerprint("T", None, 'He said "no" - twice.') != base


def test_backoff_of_a_source_failing_for_years_stays_at_the_cap() -> None:
    from daemon.policy import Policy, backoff

    assert backoff(Policy(), 5000, None) == Policy().backoff_cap
    assert backoff(Policy(), 1, None) == Policy().backoff_base


def _normalize_reference(text: str) -> str:
    """The rule as first written (one replace per mark); stored fingerprints use it."""
    import unicodedata

    from adapters.normalize import _FOLD, _PUNCT

    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_FOLD)
    text = " ".join(text.split())
    for mark in _PUNCT:
        text = text.replace(" " + mark, mark)
    return text


def test_normalized_text_is_unchanged_by_the_one_pass_rewrite() -> None:
    """Fingerprints are stored in events: the faster normalization must give exactly the
    text the original rule gave, or old versions would stop matching new ones."""
    import random

    from adapters.normalize import normalize_text

    rng = random.Random(7)
    alphabet = "ab .,;:!?)]([ \t\n\u00a0\u2019\u201c\u2013\u2026\u200b\ufb01\uff0e"
    cases = ["a , b", "a ) .", " .lead", "x ,, y", "end .", "(a ) ]", "\u00a0, x"]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(5000)]
    for text in cases:
        assert normalize_text(text) == _normalize_reference(text), repr(text)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "HTTPS://Example.COM:8443/a?b=c",
        "https://b\u00fccher.de/",
        "http://example.com./",
        "http://10.1.2.3/",
        "http://[::1]:8080/feed",
        "http://localhost/",
        "https://my_host.example/",
    ],
)
def test_http_urls_with_a_valid_host_have_no_problem(url: str) -> None:
    assert http_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://", "has no valid host"),
        ("http:///feed.xml", "has no valid host"),
        ("http://user@/", "has no valid host"),
        ("http://exa mple.com/", "has no valid host"),
        ("http://a..b/", "has no valid host"),
        ("http://-a.com/", "has no valid host"),
        ("http://" + "x" * 64 + ".com/", "has no valid host"),
        ("http://example.com:99999/", "is not a valid URL"),
        ("http://[zz]/", "is not a valid URL"),
        ("ftp://example.com/", "must be http or https"),
        ("example.com/feed", "must be http or https"),
    ],
)
def test_urls_that_cannot_be_fetched_say_why(url: str, problem: str) -> None:
    found = http_url_problem(url)
    assert found is not None and found.startswith(problem), found
