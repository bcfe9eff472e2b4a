"""The shipped unit file passes `systemd-analyze verify` and `security` (RELIABILITY row 41)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "storyline.service"
INSTALLED_EXEC_START = "/opt/storyline/.venv/bin/storyline --config /etc/storyline/config.toml run"
MAX_EXPOSURE = 2.0


@pytest.fixture
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not found: apt-get install systemd to check the unit file")
    return path


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists on this machine.

    verify checks that ExecStart's binary exists; /opt/storyline is only there once deployed.
    Everything else in the file is verified unchanged.
    """
    text = UNIT.read_text()
    assert f"\nExecStart={INSTALLED_EXEC_START}\n" in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_EXEC_START.split()[0], sys.executable, 1))
    return copy


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def complaints_about(unit: Path, stderr: str) -> list[str]:
    """stderr lines of `verify`, minus warnings located in other unit files.

    verify also loads the units ours pulls in (network-online.target, multi-user.target and
    their dependencies) from the host; a "/lib/systemd/system/x.service:12: ..." line about
    one of those is the host's business. Every other line, including unexpected ones, counts.
    """
    other_unit = re.compile(r"^(/\S+):\d+: ")
    kept = []
    for line in stderr.splitlines():
        match = other_unit.match(line)
        if not line.strip() or (match and match.group(1) != str(unit)):
            continue
        kept.append(line)
    return kept


def test_unit_verifies_cleanly(systemd_analyze: str, verifiable_unit: Path) -> None:
    # --man=no: Documentation= has no man: pages, and man-db may be absent in CI images.
    result = run(systemd_analyze, "verify", "--man=no", str(verifiable_unit))
    assert result.returncode == 0, result.stderr
    assert complaints_about(verifiable_unit, result.stderr) == []


def test_verify_would_catch_a_mistyped_directive(systemd_analyze: str, tmp_path: Path) -> None:
    # Guards the test above: verify only warns (exit 0) on unknown keys, so stderr must be read.
    unit = tmp_path / UNIT.name
    text = UNIT.read_text().replace(INSTALLED_EXEC_START.split()[0], sys.executable, 1)
    unit.write_text(text.replace("\nUMask=0027\n", "\nUMask=0027\nProtectSytem=strict\n"))
    result = run(systemd_analyze, "verify", "--man=no", str(unit))
    assert any("ProtectSytem" in line for line in complaints_about(unit, result.stderr))


def test_exposure_score_is_at_most_threshold(systemd_analyze: str) -> None:
    # --offline=true reads the file itself instead of asking a running systemd (none in CI).
    result = run(systemd_analyze, "security", "--offline=true", "--no-pager", str(UNIT))
    assert result.returncode == 0, result.stderr
    found = re.search(rf"Overall exposure level for {UNIT.name}: (\d+\.\d+)", result.stdout)
    assert found, result.stdout
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_every_directive_has_a_comment_right_above_it() -> None:
    lines = UNIT.read_text().splitlines()
    uncommented = [
        f"{number}: {line}"
        for number, (previous, line) in enumerate(zip(["", *lines], lines, strict=False), 1)
        if line.strip()
        and not line.startswith(("#", ";", "["))
        and not previous.startswith(("#", ";"))
    ]
    assert uncommented == []


def test_service_directives_match_the_reliability_rules() -> None:
    directives = dict(
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith(("#", ";"))
    )
    assert directives["Type"] == "notify"
    assert directives["WatchdogSec"] == "30"
    assert directives["Restart"] == "on-failure"
    assert directives["ProtectSystem"] == "strict"
    # Longer than one 30 s HTTP deadline plus the longest append batch.
    assert int(directives["TimeoutStopSec"]) > 30
