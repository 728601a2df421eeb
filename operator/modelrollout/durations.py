"""Durations as users write them in specs: ``500ms``, ``30s``, ``1m30s``, ``2h``.

The CRD carries the same pattern (:data:`PATTERN`) so the API server refuses
what this module cannot read.
"""

from __future__ import annotations

import re

PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
#: The longest duration read: a year. Longer is a typo (a pause that waits for a person has
#: no duration), and would overflow clocks and PromQL ranges.
MAX_SECONDS = 366 * 24 * 3600.0
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse(text: str) -> float:
    """Seconds in ``text``; ``ValueError`` names what is wrong."""
    if not re.fullmatch(PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use a number with ms, s, m or h, e.g. 30s")
    seconds = sum(float(number) * _SECONDS[unit] for number, unit in _PART.findall(text))
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {text!r} is longer than {MAX_SECONDS / 3600:g}h (366 days)")
    return seconds


def format_seconds(seconds: float) -> str:
    """A short human form for messages: 90 -> '1m30s'."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"
