"""Named fault points for crash and hang tests, enabled only by STORYLINE_FAULTS
(a comma-separated list). Nothing here runs unless a test sets that variable."""

from __future__ import annotations

import os
import signal
import time


def active(name: str) -> bool:
    return name in os.environ.get("STORYLINE_FAULTS", "").split(",")


def crash_point(name: str) -> None:
    """SIGKILL ourselves at ``name`` if enabled: no cleanup, like a power cut."""
    if active(name):
        os.kill(os.getpid(), signal.SIGKILL)


def hang_point(name: str) -> None:
    """Block forever at ``name`` if enabled, to prove the watchdog notices."""
    while active(name):
        time.sleep(3600)
