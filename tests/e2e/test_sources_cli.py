"""The real CLI against fixture pages served on 127.0.0.1: adding sources, polling once,
and reading the history back (history, diff, show --as-of)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import FIXTURES
from tests.e2e.harness import Storyline
from tests.httpserver import Reply, Server, rss, running

EXPECTED = json.loads((FIXTURES / "changelog" / "expected-versions.json").read_text())
GUARDIAN = EXPECTED["url"]
NS = "/articles/1744520"
HTML = {"Content-Type": "text/html; charset=utf-8"}


@pytest.fixture
def server() -> Iterator[Server]:
    with running() as srv:
        srv.serve(
            NS, Reply(200, (FIXTURES / "changelog/newssniffer/article.html").read_bytes(), HTML)
        )
        for n in range(3):
            body = (FIXTURES / f"changelog/newssniffer/version-{n}.html").read_bytes()
            srv.serve(f"{NS}/versions/{9000 + n}", Reply(200, body, HTML))
        items = [("http://news.example/1", "One", "First story.", "Mon, 23 Nov 2026 09:00:00 GMT")]
        srv.serve("/feed.xml", Reply(200, rss(items)))
        yield srv


def run(site: Storyline, *args: str) -> str:
    result = site.cli(*args)
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


def test_sources_poll_and_reading_history_back(storyline: Storyline, server: Server) -> None:
    site = storyline
    site.write_config(http__allow_private_networks=True, http__per_host_min_delay=0.0)
    site.init()
    changelog_id = run(
        site, "sources", "add", server.url(NS), "--kind", "changelog", "--name", "Sniffer"
    ).strip()
    feed_id = run(site, "sources", "add", server.url("/feed.xml"), "--name", "Example").strip()
    assert changelog_id.startswith("src-") and feed_id.startswith("src-")

    out = run(site, "poll", "--once")
    assert "checked 2 sources" in out and "4 events" in out
    again = run(site, "poll", "--once", "--all")
    assert "0 events" in again

    listing = run(site, "sources", "list")
    assert changelog_id in listing and "changelog" in listing and "Example" in listing
    shown = run(site, "sources", "show", "Example")
    assert "not-modified" in shown or "unchanged" in shown

    history = run(site, "history", GUARDIAN)
    lines = [line for line in history.splitlines() if line.strip().startswith("v")]
    assert len(lines) == 3 and all("changelog" in line for line in lines)
    assert "tracker 0 at 2017-12-22 09:31" in lines[0]

    # the tracker's page, as the source was added, and the source's id name it too
    assert run(site, "history", server.url(NS)) == history
    assert run(site, "history", changelog_id) == run(site, "history", "Sniffer") == history
    # written another way that names the same source, as sources show takes it
    other_spelling = server.url(NS).replace("http://", "HTTP://") + "#changes"
    assert run(site, "history", other_spelling) == history
    feed = site.cli("history", server.url("/feed.xml"))  # a feed tracks no one article
    assert feed.returncode == 2 and "no article matches" in feed.stderr

    diff = run(site, "diff", GUARDIAN, "2", "3")
    assert "{+Boris Johnson and Sergei Lavrov spar" in diff or "{+" in diff
    assert "[-" in diff

    first = run(site, "show", GUARDIAN, "--as-of", "2017-12-22T10:00:00Z")
    assert first.startswith("# v1 of 3")
    assert EXPECTED["versions"][0]["paragraphs"][0] in first
    now = run(site, "show", GUARDIAN)
    assert now.startswith("# v3 of 3")

    early = site.cli("show", GUARDIAN, "--as-of", "2017-12-21T00:00:00Z")
    assert early.returncode == 2 and "no version yet" in early.stderr
    removed = run(site, "sources", "remove", feed_id)
    assert removed.strip() == feed_id
    status = json.loads(run(site, "status", "--json"))
    assert status["sources"]["by_status"] == {"active": 1, "removed": 1}


def test_show_gives_the_current_text_when_a_tracker_history_arrives_later(
    storyline: Storyline, server: Server
) -> None:
    """A dropped file first, then the tracker's older versions: they go into the past,
    and ``show`` (without --as-of) still gives the file's text, the one current now."""
    site = storyline
    site.write_config(http__allow_private_networks=True, http__per_host_min_delay=0.0)
    site.init()
    seed = site.stage / "003.txt"
    seed.write_bytes((FIXTURES / "seeds" / "003_56ba656788b3d0c8.txt").read_bytes())
    assert "1 new" in run(site, "ingest", str(seed))
    run(site, "sources", "add", server.url(NS), "--kind", "changelog")
    run(site, "poll", "--once")

    now = run(site, "show", GUARDIAN)
    assert now.startswith("# v1 of 4") and "(file, substantive)" in now.splitlines()[0]
    then = run(site, "show", GUARDIAN, "--as-of", "2017-12-22T10:00:00Z")
    assert then.startswith("# v2 of 4")
    assert EXPECTED["versions"][0]["paragraphs"][0] in then
    later = run(site, "show", GUARDIAN, "--as-of", "2017-12-22T15:00:00Z")
    assert later.startswith("# v4 of 4")
