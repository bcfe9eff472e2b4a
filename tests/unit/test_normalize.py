from __future__ import annotations

from adapters.normalize import article_id, article_key, canonical_url, fingerprint


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
