"""What the benchmark scripts share: the word list of their generated texts, the
error that ends a benchmark, and the child server processes they start. Imported as
``common`` (each script runs with bench/ first on sys.path)."""

from __future__ import annotations

import json
import select
import subprocess
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

VOCABULARY = (
    "the minister said on tuesday that talks with officials in brussels would resume "
    "after the summit ceasefire sanctions parliament embassy spokeswoman statement "
    "council inquiry budget election campaign report agency court ruling police "
    "hospital university workers union strike energy prices inflation bank rates "
    "growth exports trade deal border refugees aid flood storm drought climate "
    "vaccine trial researchers data security cyber attack network company shares "
    "investors market profit warning regulator fine consumers prime opposition leader"
)
WORDS = VOCABULARY.split()


class BenchError(Exception):
    """The benchmark could not run to the end."""


@contextmanager
def child_server(
    command: Sequence[str], *, name: str, ready_seconds: float, stop_seconds: float
) -> Iterator[list[str]]:
    """Run a server script that prints ``ready PORT ...`` on its first line; yields
    the fields after ``ready``. The process is always stopped, even on error."""
    process = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], ready_seconds)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("ready "):
            raise BenchError(f"{name} not ready in {ready_seconds:g} s: {line!r}")
        yield line.split()[1:]
    finally:
        process.terminate()
        try:
            process.wait(stop_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(stop_seconds)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def control(base: str, path: str, timeout: float) -> dict[str, Any]:
    """GET a server's JSON control endpoint (reset, stats)."""
    with urllib.request.urlopen(base + path, timeout=timeout) as response:
        return dict(json.loads(response.read()))
