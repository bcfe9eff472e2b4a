"""The JSON codec of the event log's payload and metadata columns."""

from __future__ import annotations

import json
import math

import pytest

from storage.db import json_dumps, json_loads


@pytest.mark.parametrize(
    "value",
    [
        {"title": "Caf\u00e9 \u201cquoted\u201d \u2013 \U0001f600", "body": 'a\nb\t"c"\\'},
        {"nested": {"list": [1, 2.5, None, True, "x"]}, "empty": {}},
        {"big": 2**70},  # over 64 bits: orjson refuses, the stdlib writes it
        {"lone": "half a pair \ud800 here"},  # a lone surrogate: the same
    ],
)
def test_every_document_reads_back_as_the_stdlib_would_read_it(value: object) -> None:
    text = json_dumps(value)
    assert json.loads(text) == value
    assert json_loads(text) == value


def test_documents_written_by_the_stdlib_before_still_read() -> None:
    old = json.dumps({"x": float("nan"), "y": "z"})  # NaN: not JSON, but json wrote it
    loaded = json_loads(old)
    assert math.isnan(loaded["x"]) and loaded["y"] == "z"
