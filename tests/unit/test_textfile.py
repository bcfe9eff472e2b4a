"""The text-file adapter: seeds, header blocks, encodings and unusable input."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.errors import UnusableInput
from adapters.observation import Observation
from adapters.textfile import parse_text_file

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


def _seed_bytes(prefix: str) -> bytes:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path.read_bytes()


def _seed(prefix: str) -> Observation:
    return parse_text_file(_seed_bytes(prefix), name=f"{prefix}.txt")


SEED_TITLES = {
    "000": "Boris Johnson to pressure Russia to pull out of Ukraine and Syria on first "
    "Foreign Secretary visit to country in five years",
    "001": _seed_bytes("001").decode("utf-8").split("\n")[0].strip(),
    "002": "Press release: Foreign Secretary to visit Moscow",
    "003": "‘Things aren’t easy between us’: Boris Johnson meets Russian counterpart in Moscow",
    "004": "Boris Johnson urges Russia to use influence to halt Aleppo assault",
}


def test_seed_001_title_is_its_whole_first_line() -> None:
    assert SEED_TITLES["001"].startswith(
        "Boris Johnson will become the first UK minister to visit Russia in more than five years"
    )
    assert SEED_TITLES["001"].endswith("foreign minister Sergei Lavrov.")


@pytest.mark.parametrize("prefix", sorted(SEED_TITLES))
def test_seed_gets_exact_title_and_a_body_without_it(prefix: str) -> None:
    observation = _seed(prefix)
    assert observation.title == SEED_TITLES[prefix]
    assert observation.channel == "file"
    assert observation.body
    assert observation.title not in observation.body.split("\n\n")


def test_seed_000_second_line_is_the_standfirst() -> None:
    observation = _seed("000")
    assert observation.standfirst is not None
    assert observation.standfirst.startswith("The Foreign Secretary will meet face-to-face")
    assert observation.paragraphs[0].startswith("BORIS Johnson will travel to Moscow")


def test_seed_001_lede_title_means_no_standfirst() -> None:
    observation = _seed("001")
    assert observation.standfirst is None
    assert observation.paragraphs[0].startswith("The trip — to take place")


def test_blank_lines_between_paragraphs_are_not_paragraphs() -> None:
    lines = [line.strip() for line in _seed_bytes("004").decode().split("\n") if line.strip()]
    observation = _seed("004")
    assert [observation.title, observation.standfirst, *observation.paragraphs] == lines


def test_newssniffer_dump_gives_url_source_and_tracker() -> None:
    observation = _seed("003")
    assert observation.url == (
        "http://www.theguardian.com/politics/2017/dec/22/"
        "boris-johnson-meets-russian-counterpart-sergei-lavrov-moscow"
    )
    assert observation.source_name == "guardian"
    assert observation.extra == {"tracker": "newssniffer", "versions_seen": "8"}


def test_newssniffer_dump_body_skips_preamble_and_time_notes() -> None:
    paragraphs = _seed("003").paragraphs
    assert paragraphs[0].startswith("Boris Johnson has begun talks in Moscow")
    assert "(about 2 hours later)" not in paragraphs
    assert not any(p.startswith(("This article is from", "Version 0")) for p in paragraphs)


def test_newssniffer_dump_with_changed_title_takes_newer_one() -> None:
    dump = (
        "This article is from the source 'bbc' and was first published or seen on .\n\n"
        "You can find the current article at its original source at http://bbc.co.uk/a\n\n"
        "Version 1 Version 2\n"
        "Johnson to visit Moscow Johnson to visit Moscow next week\n"
        "Body text.\n"
    )
    observation = parse_text_file(dump.encode(), name="dump.txt")
    assert observation.title == "Johnson to visit Moscow next week"
    assert observation.extra == {"tracker": "newssniffer"}


HEADED = """Title: Johnson in Moscow
URL: https://example.com/news/johnson-moscow
source: Example News
Published: 2017-12-22T10:30:00+01:00
Author: Jane Reporter
Standfirst: The first visit in five years.

Press release: this line is not a title
Second paragraph.
"""


def test_header_block_overrides_guesses() -> None:
    observation = parse_text_file(HEADED.encode(), name="headed.txt")
    assert observation.title == "Johnson in Moscow"
    assert observation.url == "https://example.com/news/johnson-moscow"
    assert observation.source_name == "Example News"
    assert observation.published_at == datetime(2017, 12, 22, 9, 30, tzinfo=UTC)
    assert observation.byline == "Jane Reporter"
    assert observation.standfirst == "The first visit in five years."
    assert observation.paragraphs == [
        "Press release: this line is not a title",
        "Second paragraph.",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2017-12-22", datetime(2017, 12, 22, tzinfo=UTC)),
        ("2017-12-22T10:30:00Z", datetime(2017, 12, 22, 10, 30, tzinfo=UTC)),
        ("Fri, 22 Dec 2017 10:30:00 -0500", datetime(2017, 12, 22, 15, 30, tzinfo=UTC)),
    ],
)
def test_published_header_becomes_aware_utc(raw: str, expected: datetime) -> None:
    text = f"Published: {raw}\n\nA title\nA body.\n"
    observation = parse_text_file(text.encode(), name="dated.txt")
    assert observation.published_at == expected
    assert observation.title == "A title"


def test_unreadable_published_date_is_kept_raw() -> None:
    text = "Title: T\nPublished: last Tuesday-ish\n\nBody.\n"
    observation = parse_text_file(text.encode(), name="dated.txt")
    assert observation.published_at is None
    assert observation.extra == {"published_raw": "last Tuesday-ish"}


def test_first_block_with_an_unknown_key_is_not_a_header() -> None:
    text = "Title: Not a header\nPress release: Foreign Secretary to visit Moscow\n\nBody.\n"
    observation = parse_text_file(text.encode(), name="x.txt")
    assert observation.title == "Title: Not a header"
    assert observation.url is None


def test_markdown_title_loses_heading_marks() -> None:
    observation = parse_text_file(b"# A headline\n\nBody.\n", name="notes/a.md")
    assert observation.title == "A headline"


def test_utf8_bom_is_stripped() -> None:
    observation = parse_text_file(codecs.BOM_UTF8 + _seed_bytes("000"), name="bom.txt")
    assert observation == _seed("000")


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("prefix", ["000", "003"])
def test_utf16_with_bom_reads_like_utf8(codec: str, prefix: str) -> None:
    bom = codecs.BOM_UTF16_LE if codec == "utf-16-le" else codecs.BOM_UTF16_BE
    data = bom + _seed_bytes(prefix).decode("utf-8").encode(codec)
    assert parse_text_file(data, name="wide.txt") == _seed(prefix)


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_endings_read_like_lf(newline: bytes) -> None:
    data = _seed_bytes("002").replace(b"\n", newline)
    assert parse_text_file(data, name="dos.txt") == _seed("002")


CP1252_TITLE = "“Café society” isn’t dead, say Parisians"


@pytest.mark.parametrize(
    "text",
    [
        f"{CP1252_TITLE}\nOwners of a café near the Seine say trade is up — and they’re hiring.\n",
        "“Café” opens\nA short body.\n",
    ],
)
def test_cp1252_text_decodes_without_mojibake(text: str) -> None:
    observation = parse_text_file(text.encode("cp1252"), name="legacy.txt")
    assert observation.title == text.split("\n")[0]
    assert observation.body == text.split("\n")[1]


def test_latin1_accents_decode_without_mojibake() -> None:
    text = "Crème brûlée at the café\nSome text à la carte, déjà vu.\n"
    observation = parse_text_file(text.encode("latin-1"), name="latin.txt")
    assert observation.title == "Crème brûlée at the café"


def test_cyrillic_single_byte_text_is_not_read_as_western() -> None:
    text = "Борис Джонсон прибыл в Москву\nЛавров сказал, что отношения плохие.\n"
    observation = parse_text_file(text.encode("cp1251"), name="ru.txt")
    assert observation.title == "Борис Джонсон прибыл в Москву"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b" \n\t\r\n  \n", "empty"),
        (codecs.BOM_UTF16_LE + "  \n ".encode("utf-16-le"), "empty"),
        (b"Title line\n\x00\x01\x02\x00binary\xff", "binary"),
        (bytes(range(256)) * 4, "binary"),
        (bytes(range(0x80, 0x100)) * 3, "undecodable"),
        (b"\x01\x02\x03\x04\x05\x06\x07\x08" * 20, "undecodable"),
        ("caf\u00e9 \u201cx\u201d".encode() + b"\x1b\x7f\x0e" * 20, "undecodable"),
        (codecs.BOM_UTF16_LE + ("\u00e9\x01\x02\x03" * 30).encode("utf-16-le"), "undecodable"),
        (b"Source: somewhere\n\n", "no-title"),
    ],
)
def test_unusable_input_raises_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(UnusableInput) as caught:
        parse_text_file(data, name="inbox/bad.txt")
    assert caught.value.reason == reason
    assert "'inbox/bad.txt'" in str(caught.value)


def test_a_few_control_codes_in_a_long_text_are_kept() -> None:
    body = "\u201cQuoted\u201d caf\u00e9 text with a stray escape \x1b here. " * 10
    observation = parse_text_file(f"Title\n{body}".encode(), name="a.txt")
    assert observation.title == "Title"
    assert "\x1b" in observation.body


def test_a_header_block_that_runs_to_the_end_of_the_file_has_no_body_to_title() -> None:
    with pytest.raises(UnusableInput) as caught:
        parse_text_file(b"Source: somewhere\nByline: Someone", name="h.txt")
    assert caught.value.reason == "no-title"


def test_a_header_with_an_empty_value_still_counts_and_the_value_is_left_out() -> None:
    observation = parse_text_file(b"Title: The title\nByline: \n\nBody here.\n", name="h.txt")
    assert (observation.title, observation.byline, observation.body) == (
        "The title",
        None,
        "Body here.",
    )
