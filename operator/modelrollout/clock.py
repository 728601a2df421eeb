"""Time for the operator: injectable, and RFC 3339 as Kubernetes writes it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-11-27T03:12:38Z``; sub-second precision kept when present."""
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def seconds_since(text: str | None, now: datetime) -> float | None:
    if text is None:
        return None
    return (now - parse_time(text)).total_seconds()
