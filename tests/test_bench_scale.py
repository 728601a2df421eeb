"""The pure parts of bench/scale.py: nearest-rank percentiles and the step lag of pauses.

The bench itself starts processes for minutes and is not run here.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "scale.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


scale = _load()
Seen = scale.Seen
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
STAMP = "2027-01-15T08:00:00Z"


def stamp(offset: float) -> str:
    return f"2027-01-15T08:00:{offset:09.6f}Z"


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([float(v) for v in range(1, 101)], 99, 99.0),
        ([float(v) for v in range(1, 101)], 100, 100.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0], 1, 1.0),
    ],
)
def test_percentile_is_by_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert scale.percentile(values, q) == expected


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(scale.percentile([], 99))


def test_stamps_are_read_to_the_microsecond() -> None:
    assert scale._stamp(stamp(1.25)) == pytest.approx(T0 + 1.25, abs=1e-6)
    assert scale._stamp(STAMP) == T0


def test_lag_is_the_arrival_of_the_next_step_after_the_due_time() -> None:
    """Given a 3 s pause at step 1 stamped at t0+1, when step 2 arrives at t0+4.5 and is
    stamped t0+4.2, then the observed lag is 0.5 s and the decision lag 0.2 s."""
    timeline = [
        Seen(T0 + 0.1, 0, stamp(0.0), True, "Progressing"),
        Seen(T0 + 1.1, 1, stamp(1.0), True, "Paused"),
        Seen(T0 + 2.5, 1, stamp(1.0), True, "Paused"),  # a pass that did not move
        Seen(T0 + 4.5, 2, stamp(4.2), True, "Progressing"),
    ]
    observed, decided = scale.pause_lags(timeline, [1], 3.0)
    assert observed == [pytest.approx(0.5)]
    assert decided == [pytest.approx(0.2)]


def test_a_last_pause_ends_when_the_canary_is_gone() -> None:
    timeline = [
        Seen(T0 + 1.1, 3, stamp(1.0), True, "Paused"),
        Seen(T0 + 3.3, None, None, False, "Succeeded"),
    ]
    observed, decided = scale.pause_lags(timeline, [3], 2.0)
    assert observed == [pytest.approx(0.3)]
    assert decided == []


def test_a_pause_never_seen_or_never_left_gives_nothing() -> None:
    timeline = [Seen(T0 + 1.1, 1, stamp(1.0), True, "Paused")]
    assert scale.pause_lags(timeline, [1, 3], 3.0) == ([], [])


def test_a_pause_of_the_first_deployment_does_not_count() -> None:
    """Events with no canary before the pause was entered do not end it."""
    timeline = [
        Seen(T0, None, None, False, "Succeeded"),
        Seen(T0 + 1.1, 1, stamp(1.0), True, "Paused"),
        Seen(T0 + 5.0, 2, stamp(4.9), True, "Progressing"),
    ]
    observed, _ = scale.pause_lags(timeline, [1], 3.0)
    assert observed == [pytest.approx(1.0)]


def test_pauses_spread_from_six_tenths_to_fourteen_tenths() -> None:
    pauses = [scale.pause_of(i, 5, 5.0) for i in range(5)]
    assert pauses == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert scale.pause_of(0, 1, 5.0) == 3.0
