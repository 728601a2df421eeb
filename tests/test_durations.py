"""durations: reading the duration strings users write, and the short form in messages."""

from __future__ import annotations

import re

import pytest

from modelrollout import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1.5m", 90.0),
        ("0s", 0.0),
        ("1h1m1s", 3661.0),
        ("1m500ms", 60.5),
        ("90s", 90.0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5", "5 minutes", "-1s", "1d", "s", "1.s", "30s ", " 30s", "1m 30s", "30S"]
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid duration {text!r}")) as caught:
        durations.parse(text)

    assert str(caught.value).endswith("use a number with ms, s, m or h, e.g. 30s")


@pytest.mark.parametrize("text", ["500ms", "1m30s", "1.5m"])
def test_pattern_accepts_what_parse_reads(text: str) -> None:
    assert re.fullmatch(durations.PATTERN, text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.4, "0s"),
        (1, "1s"),
        (59, "59s"),
        (59.6, "1m"),
        (60, "1m"),
        (90, "1m30s"),
        (3599, "59m59s"),
        (3600, "1h"),
        (3660, "1h1m"),
        (3690, "1h1m"),
        (7200, "2h"),
        (90000, "25h"),
    ],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert durations.format_seconds(seconds) == text
