"""The daemon as a service: crashes, signals, the systemd notify protocol, the one-shot
commands (RELIABILITY.md rows 5, 14, 15, 38, 39, 40)."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.harness import (
    SEEDS,
    STORYLINE,
    DaemonProcess,
    NotifyListener,
    Storyline,
    article_title,
    base_env,
    kill_quietly,
    move_all,
    stage_articles,
    wait_for,
)

MANY = 2000


def _assert_ledger_consistent(site: Storyline) -> None:
    """No event twice: neither an idempotency key nor a stream position."""
    assert (
        site.query("select idempotency_key from events group by idempotency_key having count(*)>1")
        == []
    )
    assert (
        site.query(
            "select stream_id, stream_version from events "
            "group by stream_id, stream_version having count(*)>1"
        )
        == []
    )


def _archived_names(site: Storyline) -> list[str]:
    return sorted(p.name for p in site.archived())


def _settled(site: Storyline, expected: int, process: DaemonProcess, timeout: float) -> None:
    """Wait until the inbox is empty and ``expected`` articles are projected."""
    wait_for(
        lambda: not site.inbox_names() and site.count("articles") == expected,
        timeout,
        f"an empty inbox and {expected} articles",
        alive=process,
    )


def _batch_totals(process: DaemonProcess) -> dict[str, int]:
    totals = {"new": 0, "revised": 0, "unchanged": 0, "rejected": 0}
    for record in process.logged("batch ingested"):
        for key in totals:
            totals[key] += int(record[key])
    return totals


# -- crash recovery -------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_mid_ingest_then_restart_ingests_everything_once(storyline: Storyline) -> None:
    site = storyline
    site.write_config(inbox__batch_size=100)  # many batches: a wide window to interrupt
    site.init()
    names = stage_articles(site.stage, MANY)
    daemon = site.start()

    move_all(names, site.stage, site.inbox)
    with contextlib.closing(site.connect()) as conn:

        def some_but_not_all() -> int:
            n = int(conn.execute("select count(*) from articles").fetchone()[0])
            assert n < MANY, "every file was ingested before the kill: nothing was interrupted"
            return n

        seen = wait_for(some_but_not_all, 30.0, "the first articles", interval=0.002, alive=daemon)
        daemon.popen.send_signal(signal.SIGKILL)
    assert daemon.wait_exit(10) == -signal.SIGKILL
    print(f"SIGKILL after {seen} of {MANY} articles were visible")

    restarted = site.start()
    _settled(site, MANY, restarted, 60.0)

    assert site.count("articles") == MANY
    assert site.count("events", "event_type = 'article.discovered'") == MANY
    assert site.count("events") == MANY
    _assert_ledger_consistent(site)
    assert _archived_names(site) == names  # each exactly once: no NAME.1.txt copies
    assert site.inbox_names() == []
    titles = {t for (t,) in site.query("select title from articles")}
    assert titles == {article_title(i) for i in range(MANY)}
    assert restarted.errors() == []
    assert restarted.stop() == 0


@pytest.mark.parametrize("fault", ["before_commit", "after_commit_before_move"])
@pytest.mark.parametrize("count", [20, 200], ids=["in-daemon", "loader-workers"])
def test_crash_point_then_restart_ingests_each_file_once(
    storyline: Storyline, fault: str, count: int
) -> None:
    """20 files load in the daemon itself; 200 go through the loader worker processes
    (which also archive committed files), so both paths are crash-tested."""
    site = storyline
    site.init()
    # Old files (row 14: an old mtime is no reason to skip), taken by the first scan as
    # one batch, so the fault fires on a known batch.
    names = stage_articles(site.inbox, count, old=True)
    crashing = site.start({"STORYLINE_FAULTS": fault}, wait_ready=False)
    assert crashing.wait_exit(30) == -signal.SIGKILL
    assert crashing.logged("ready") == []

    committed = site.count("events")
    assert committed == (0 if fault == "before_commit" else len(names))
    assert site.inbox_names() == names  # nothing moved before the commit was durable
    assert site.archived() == []

    restarted = site.start()
    _settled(site, len(names), restarted, 20.0)
    assert site.count("events") == len(names)
    assert site.count("events", "event_type = 'article.discovered'") == len(names)
    _assert_ledger_consistent(site)
    assert _archived_names(site) == names
    totals = _batch_totals(restarted)
    # After a commit the re-offer is a no-op; before it, everything is new.
    assert totals["unchanged"] == committed
    assert totals["new"] == len(names) - committed
    assert restarted.stop() == 0


# -- graceful stop ---------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_mid_ingest_leaves_no_half_moved_file(storyline: Storyline) -> None:
    site = storyline
    site.write_config(inbox__batch_size=100)  # many batches: a wide window to interrupt
    site.init()
    names = stage_articles(site.stage, MANY)
    daemon = site.start()
    move_all(names, site.stage, site.inbox)
    wait_for(
        lambda: site.count("events") > 0, 30.0, "the first commit", interval=0.002, alive=daemon
    )
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0

    titles = {t for (t,) in site.query("select title from articles")}
    in_inbox = set(site.inbox_names())
    in_archive = set(_archived_names(site))
    wrong = []
    for i, name in enumerate(names):
        done = article_title(i) in titles
        if not (
            (done and name in in_archive and name not in in_inbox)
            or (not done and name in in_inbox and name not in in_archive)
        ):
            wrong.append((name, done, name in in_inbox, name in in_archive))
    assert wrong == []
    print(f"SIGTERM left {len(in_inbox)} of {MANY} files in the inbox")
    assert site.count("events") == len(titles)  # every committed event is projected

    restarted = site.start()
    _settled(site, MANY, restarted, 60.0)
    assert _archived_names(site) == names
    _assert_ledger_consistent(site)
    assert restarted.stop() == 0


# -- the notify protocol --------------------------------------------------------------


def _notify_env(listener: NotifyListener, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "400000", **extra}


@pytest.mark.slow
def test_notify_ready_after_first_scan_status_watchdog_reload_stop(
    storyline: Storyline, notify: NotifyListener
) -> None:
    site = storyline
    site.init()
    stage_articles(site.inbox, 3, old=True)
    daemon = site.start(_notify_env(notify), wait_ready=False)

    # READY=1 comes only after the first scan: the three files are already articles.
    # (Checked by the daemon's own STATUS sent with READY=1, and by the database.)
    ready = wait_for(lambda: notify.with_field("READY=1"), 20.0, "READY=1", alive=daemon)
    _, first_ready = ready[0]
    assert re.search(r"^STATUS=3 articles\b", first_ready, re.MULTILINE), first_ready
    assert {t for (t,) in site.query("select title from articles")} == {
        article_title(i) for i in range(3)
    }
    assert site.inbox_names() == []

    wait_for(
        lambda: len(notify.with_field("WATCHDOG=1")) >= 6, 10.0, "watchdog pings", alive=daemon
    )
    assert any(m.startswith("STATUS=") for _, m in notify.messages())
    assert any(
        line.startswith("STATUS=")
        for _, m in notify.messages()
        if "READY=1" not in m
        for line in m.split("\n")
    ), "no STATUS= update besides the one sent with READY=1"

    # SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1 again.
    readies_before = len(notify.with_field("READY=1"))
    daemon.signal(signal.SIGHUP)
    reloading = wait_for(
        lambda: notify.with_field("RELOADING=1"), 10.0, "RELOADING=1", alive=daemon
    )
    assert re.search(r"^MONOTONIC_USEC=\d+$", reloading[0][1], re.MULTILINE)
    again = wait_for(
        lambda: [r for r in notify.with_field("READY=1")[readies_before:]],
        10.0,
        "READY=1 after the reload",
        alive=daemon,
    )
    assert again[0][0] >= reloading[0][0]

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(30) == 0
    stopping = wait_for(lambda: notify.with_field("STOPPING=1"), 5.0, "STOPPING=1")
    assert stopping[0][0] >= again[0][0]
    assert daemon.errors() == []


@pytest.mark.slow
def test_idle_watchdog_pings_come_at_half_the_interval(
    storyline: Storyline, notify: NotifyListener
) -> None:
    """WATCHDOG_USEC=0.4 s: systemd kills a service whose pings are further apart, so the
    idle loop must ping about every 0.2 s (half the interval, as sd_watchdog_enabled(3)
    advises). The median gap is compared so that scheduler hiccups do not matter."""
    site = storyline
    site.init()
    daemon = site.start(_notify_env(notify), wait_ready=False)
    wait_for(lambda: notify.with_field("READY=1"), 20.0, "READY=1", alive=daemon)
    wait_for(
        lambda: len(notify.with_field("WATCHDOG=1")) >= 8, 10.0, "watchdog pings", alive=daemon
    )
    pings = [t for t, _ in notify.with_field("WATCHDOG=1")]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    print(f"watchdog gaps: {[round(g, 3) for g in gaps]}")
    assert statistics.median(gaps) < 0.4, f"pinged every ~{statistics.median(gaps):.3f}s"
    assert daemon.stop() == 0


@pytest.mark.slow
def test_watchdog_pings_stop_when_the_main_loop_hangs(
    storyline: Storyline, notify: NotifyListener
) -> None:
    site = storyline
    site.init()
    daemon = site.start(_notify_env(notify, STORYLINE_FAULTS="hang_after_batch"), wait_ready=False)
    wait_for(lambda: notify.with_field("READY=1"), 20.0, "READY=1", alive=daemon)
    wait_for(lambda: len(notify.with_field("WATCHDOG=1")) >= 2, 10.0, "pings", alive=daemon)

    site.drop("hang.txt", "The batch before the hang\nBody one.\nBody two.\n")
    # The file leaves the inbox inside the batch, just before the hang point.
    wait_for(lambda: not site.inbox_names(), 10.0, "the batch", alive=daemon)
    time.sleep(0.3)  # let datagrams already in flight arrive (sent before the hang)
    pings_at_hang = len(notify.with_field("WATCHDOG=1"))
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert daemon.alive()
        time.sleep(0.1)
    assert len(notify.with_field("WATCHDOG=1")) == pings_at_hang, "pinged while hung"
    assert daemon.alive()  # hung, not dead: systemd's watchdog is what ends it
    kill_quietly(daemon)


# -- one-shot commands -----------------------------------------------------------------


def test_one_shot_ingest_exit_codes(storyline: Storyline) -> None:
    site = storyline
    site.init()
    names = stage_articles(site.stage, 3)
    good = [str(site.stage / n) for n in names]
    result = site.cli("ingest", *good)
    assert result.returncode == 0, result.stderr
    assert "3 files: 3 new" in result.stdout
    assert {t for (t,) in site.query("select title from articles")} == {
        article_title(i) for i in range(3)
    }
    assert sorted(os.listdir(site.stage)) == names  # files outside the inbox stay put

    empty = site.stage / "empty.txt"
    empty.write_bytes(b"")
    more = stage_articles(site.root / "more", 4)[3:]
    result = site.cli("ingest", str(empty), str(site.root / "more" / more[0]))
    assert "1 new, 0 revised, 0 unchanged, 1 rejected" in result.stdout
    assert site.count("articles") == 4
    assert [r for (r,) in site.query("select reason from rejections")] == ["empty"]
    assert empty.exists()  # a one-shot run does not move files it was given
    assert result.returncode == 1, "a rejected input must make `storyline ingest` exit 1"


def test_config_errors_exit_2_with_one_line(storyline: Storyline) -> None:
    site = storyline
    text = site.config.read_text(encoding="utf-8")
    site.config.write_text(text.replace("[inbox]\n", "[inbox]\nbogus = 1\n", 1), "utf-8")
    result = site.cli("check-config")
    assert result.returncode == 2
    assert "inbox.bogus" in result.stderr
    assert "Traceback" not in result.stderr

    site.config.write_text(text, encoding="utf-8")
    result = site.cli("check-config")
    assert result.returncode == 0, result.stderr
    assert "[inbox]" in result.stdout

    missing = site.root / "nowhere.toml"
    result = site.cli("--config", str(missing), "check-config", config=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0]


def test_help_for_every_command(storyline: Storyline) -> None:
    site = storyline
    top = site.cli("--help", config=False)
    assert top.returncode == 0, top.stderr
    commands = re.findall(r"^  ([a-z][a-z-]+)\s", top.stdout.split("Commands:")[1], re.MULTILINE)
    assert {"init", "run", "ingest", "status", "history", "rebuild", "check-config"} <= set(
        commands
    )
    # All at once: each start costs most of a second.
    with contextlib.ExitStack() as stack:
        running = {
            command: stack.enter_context(
                subprocess.Popen(
                    [*STORYLINE, command, "--help"],
                    env=base_env(),
                    cwd=site.root,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            for command in commands
        }
        for command, process in running.items():
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, (command, err)
            assert "Usage:" in out, command


# -- rebuild ---------------------------------------------------------------------------


def _dump(site: Storyline) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    return (
        site.query("select * from articles order by article_id"),
        site.query("select * from article_versions order by article_id, version"),
    )


def test_rebuild_reproduces_the_projections_exactly(storyline: Storyline) -> None:
    site = storyline
    site.init()
    seeds = sorted(SEEDS.glob("*.txt"))
    copies = []
    for seed in seeds:
        copy = site.stage / seed.name
        copy.write_bytes(seed.read_bytes())
        copies.append(str(copy))
    assert site.cli("ingest", *copies).returncode == 0
    revised = Path(copies[-1])
    revised.write_text(revised.read_text("utf-8") + "\nA new closing paragraph.\n", "utf-8")
    result = site.cli("ingest", str(revised))
    assert result.returncode == 0, result.stderr
    assert "1 revised" in result.stdout

    before = _dump(site)
    assert len(before[0]) == 5 and len(before[1]) == 6
    result = site.cli("rebuild")
    assert result.returncode == 0, result.stderr
    assert "from 6 events" in result.stdout
    assert _dump(site) == before
    assert repr(_dump(site)) == repr(before)
