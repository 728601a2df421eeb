"""A known hour of Knative queue-proxy and model-server metrics, for exact query results.

Written as OpenMetrics and turned into TSDB blocks with ``promtool tsdb
create-blocks-from openmetrics``; a Prometheus started on those blocks answers
queries evaluated at known times with numbers worked out here by hand.

One sample every 15 s from minute 0 to minute 60 of the hour; with range
windows that are whole multiples of 15 s ending on a sample, every window
starts on a sample too (ranges are closed in Prometheus 2.x), so ``increase``
needs no extrapolation and the numbers are exact.

Namespace ``models``; InferenceService ``fraud``. Per 15 s step:

- stable revision ``fraud-predictor-00001``, the whole hour: 149 requests with
  200 and 1 with 500; latency buckets (ms, cumulative) 30/90/140/148/150/150/150
  for le 5/10/25/50/100/250/+Inf; predictions 10/25/50/75/90/100 for le
  0.1/0.25/0.5/0.75/0.9/+Inf.
- canary revision ``fraud-predictor-00002`` from minute 20 (value 0 there):
  30 requests with 200 until minute 40; then 27 with 200 and 3 with 500 (its
  5xx series starts at 0 at minute 40) until minute 50; no requests after
  (series flat until minute 60). Latency buckets 3/9/20/28/29/30/30,
  predictions 5/15/35/60/80/100, both only while it has traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

STEP_SECONDS = 15
STEPS_PER_MINUTE = 60 // STEP_SECONDS
NAMESPACE = "models"
INFERENCE_SERVICE = "fraud"
STABLE = "fraud-predictor-00001"
CANARY = "fraud-predictor-00002"
CANARY_START_MINUTE = 20
CANARY_ERRORS_MINUTE = 40
CANARY_IDLE_MINUTE = 50
HOUR_MINUTES = 60

LATENCY_LE = ("5", "10", "25", "50", "100", "250", "+Inf")
STABLE_LATENCY = (30, 90, 140, 148, 150, 150, 150)
CANARY_LATENCY = (3, 9, 20, 28, 29, 30, 30)
PREDICTION_LE = ("0.1", "0.25", "0.5", "0.75", "0.9", "+Inf")
STABLE_PREDICTIONS = (10, 25, 50, 75, 90, 100)
CANARY_PREDICTIONS = (5, 15, 35, 60, 80, 100)


def _k(minute: int) -> int:
    return minute * STEPS_PER_MINUTE


def canary_traffic_steps(k: int) -> int:
    """Steps in which the canary served requests, up to step ``k``."""
    return max(0, min(k, _k(CANARY_IDLE_MINUTE)) - _k(CANARY_START_MINUTE))


def canary_ok(k: int) -> int:
    good_at_30 = min(k, _k(CANARY_ERRORS_MINUTE)) - _k(CANARY_START_MINUTE)
    good_at_27 = max(0, min(k, _k(CANARY_IDLE_MINUTE)) - _k(CANARY_ERRORS_MINUTE))
    return 30 * good_at_30 + 27 * good_at_27


def canary_errors(k: int) -> int:
    return 3 * (min(k, _k(CANARY_IDLE_MINUTE)) - _k(CANARY_ERRORS_MINUTE))


@dataclass(frozen=True)
class History:
    """The hour ``[start, start + 60 min]``, ``start`` in Unix seconds on a whole minute."""

    start: int

    @classmethod
    def ending_before(cls, now: datetime) -> History:
        end = int(now.timestamp()) // 60 * 60 - 120
        return cls(end - HOUR_MINUTES * 60)

    def at(self, minute: float) -> datetime:
        return datetime.fromtimestamp(self.start, UTC) + timedelta(minutes=minute)

    def openmetrics(self) -> str:
        lines = [*self._requests(), *self._latencies(), *self._predictions(), "# EOF"]
        return "\n".join(lines) + "\n"

    def _times(self, first_minute: int = 0) -> Iterator[tuple[int, int]]:
        for k in range(_k(first_minute), _k(HOUR_MINUTES) + 1):
            yield k, self.start + k * STEP_SECONDS

    def _requests(self) -> Iterator[str]:
        yield "# TYPE revision_app_request_count unknown"
        arms = [
            (STABLE, "200", "2xx", 0, lambda k: 149 * k),
            (STABLE, "500", "5xx", 0, lambda k: k),
            (CANARY, "200", "2xx", CANARY_START_MINUTE, canary_ok),
            (CANARY, "500", "5xx", CANARY_ERRORS_MINUTE, canary_errors),
        ]
        for revision, code, code_class, first, value in arms:
            labels = (
                f'namespace_name="{NAMESPACE}",revision_name="{revision}",'
                f'response_code="{code}",response_code_class="{code_class}"'
            )
            for k, t in self._times(first):
                yield f"revision_app_request_count{{{labels}}} {value(k)} {t}"

    def _histogram(
        self,
        name: str,
        bounds: tuple[str, ...],
        arms: list[tuple[str, tuple[int, ...], int, float]],
        extra_labels: str,
    ) -> Iterator[str]:
        yield f"# TYPE {name} histogram"
        for revision, per_step, first, mean in arms:
            labels = f'namespace_name="{NAMESPACE}",revision_name="{revision}"{extra_labels}'
            for k, t in self._times(first):
                steps = k if revision == STABLE else canary_traffic_steps(k)
                for le, count in zip(bounds, per_step, strict=True):
                    yield f'{name}_bucket{{{labels},le="{le}"}} {count * steps} {t}'
                yield f"{name}_count{{{labels}}} {per_step[-1] * steps} {t}"
                yield f"{name}_sum{{{labels}}} {mean * per_step[-1] * steps} {t}"

    def _latencies(self) -> Iterator[str]:
        return self._histogram(
            "revision_app_request_latencies",
            LATENCY_LE,
            [(STABLE, STABLE_LATENCY, 0, 12), (CANARY, CANARY_LATENCY, CANARY_START_MINUTE, 40)],
            ',response_code="200",response_code_class="2xx"',
        )

    def _predictions(self) -> Iterator[str]:
        return self._histogram(
            "modelrollout_prediction_value",
            PREDICTION_LE,
            [
                (STABLE, STABLE_PREDICTIONS, 0, 0.5),
                (CANARY, CANARY_PREDICTIONS, CANARY_START_MINUTE, 0.6),
            ],
            "",
        )


@dataclass(frozen=True)
class HistoryServer:
    """A Prometheus serving the :class:`History`; ``blocks`` is promtool's TSDB, to copy."""

    history: History
    url: str
    blocks: Path
