"""The JSON codec of the event log's payload and metadata columns."""

from __future__ import annotations

import json
import math

import pytest

from storage.db import json_dumps


@pytest.mark.parametrize(
    "value",
    [
        {"title": "Caf\u00e9 \u201cquoted\u201d \u2013 \U0001f600", "body": 'a\nb\t"c"\\'},
        {"nested": {"list": [1, 2.5, None, True, "x"]}, "empty": {}},
        {"big": 2**70 + 1, "negative": -(2**64) - 3},  # over 64 bits: not a float
        {"nan": math.inf, "list": [1.5, -math.inf]},  # orjson would write null
        {"lone": "half a pair \ud800 here"},  # a lone surrogate: the same
    ],
)
def test_every_document_reads_back_as_the_stdlib_would_read_it(value: object) -> None:
    assert json.loads(json_dumps(value)) == value


def test_nan_is_written_as_the_stdlib_writes_it() -> None:
    assert math.isnan(json.loads(json_dumps({"x": math.nan}))["x"])


@pytest.mark.parametrize(
    "value",
    [
        {"deep": [{"a": [None, "x", {"b": -math.inf}]}]},
        {"tuple": ("a", 1, (2, math.nan))},
        [1, True, None, {"x": [math.inf]}],
    ],
)
def test_a_non_finite_number_anywhere_is_written_by_the_stdlib(value: object) -> None:
    assert json_dumps(value) == json.dumps(value)
