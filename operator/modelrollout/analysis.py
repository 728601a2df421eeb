"""Analysis: which metrics are due, how verdicts add up, and when a run fails.

Each metric keeps its own counts (as Argo Rollouts does): FAIL, INCONCLUSIVE
and ERROR results are counted apart and each has its own limit; the worst
state wins. The interval is enforced here from each metric's last measurement,
not by however often the operator happens to be woken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from math import isfinite

from modelrollout import durations
from modelrollout.api import (
    AnalysisPhase,
    AnalysisSpec,
    AnalysisStatus,
    Judge,
    MetricSpec,
    MetricStatus,
    ModelRolloutSpec,
    Step,
    Verdict,
)
from modelrollout.clock import parse_time, rfc3339, seconds_since
from modelrollout.decision import Measurement
from modelrollout.judges import JUDGES, Judgement

#: How a judgement that is still collecting evidence reads in status.
PENDING_MESSAGE = "collecting evidence"


def metrics_of(spec: ModelRolloutSpec) -> tuple[MetricSpec, ...]:
    analysis = spec.strategy.analysis
    return analysis.metrics if analysis else ()


def interval_of(analysis: AnalysisSpec | None, metric: MetricSpec) -> float:
    text = metric.interval or (analysis.interval if analysis else AnalysisSpec().interval)
    return durations.parse(text)


def step_metric_names(spec: ModelRolloutSpec, step: Step | None) -> tuple[str, ...]:
    """The metrics an analysis step waits for (all of them when it names none)."""
    if step is None or step.analysis is None:
        return ()
    return step.analysis.metrics or tuple(m.name for m in metrics_of(spec))


def active_metrics(spec: ModelRolloutSpec, step: Step | None) -> tuple[MetricSpec, ...]:
    """Background metrics always; the others only while an analysis step names them."""
    named = set(step_metric_names(spec, step))
    return tuple(m for m in metrics_of(spec) if m.background or m.name in named)


def fresh_status(spec: ModelRolloutSpec) -> AnalysisStatus | None:
    metrics = metrics_of(spec)
    if not metrics:
        return None
    return AnalysisStatus(metrics=tuple(MetricStatus(name=m.name) for m in metrics))


def metric_status(status: AnalysisStatus | None, name: str) -> MetricStatus:
    found = next((m for m in status.metrics if m.name == name), None) if status else None
    return found or MetricStatus(name=name)


def due(
    spec: ModelRolloutSpec, status: AnalysisStatus | None, step: Step | None, now: datetime
) -> tuple[MetricSpec, ...]:
    """The active metrics whose interval has passed since their last measurement."""
    out = []
    for metric in active_metrics(spec, step):
        elapsed = seconds_since(metric_status(status, metric.name).measured_at, now)
        if elapsed is None or elapsed >= interval_of(spec.strategy.analysis, metric):
            out.append(metric)
    return tuple(out)


def next_due_in(
    spec: ModelRolloutSpec, status: AnalysisStatus | None, step: Step | None, now: datetime
) -> float | None:
    """Seconds until the next active metric is due (0 if one is due now)."""
    waits = []
    for metric in active_metrics(spec, step):
        elapsed = seconds_since(metric_status(status, metric.name).measured_at, now)
        interval = interval_of(spec.strategy.analysis, metric)
        waits.append(0.0 if elapsed is None else max(0.0, interval - elapsed))
    return min(waits, default=None)


def record(
    spec: ModelRolloutSpec,
    status: AnalysisStatus | None,
    step: Step | None,
    measurements: Mapping[str, Measurement],
    now: datetime,
) -> AnalysisStatus | None:
    """Judge the measurements of the metrics that are due and update the counts.

    A measurement for a metric that is not due is ignored, so feeding the same
    observations twice never counts a result twice.
    """
    status = status or fresh_status(spec)
    if status is None:
        return None
    updated = {m.name: m for m in status.metrics}
    for metric in due(spec, status, step, now):
        measurement = measurements.get(metric.name)
        if measurement is None:
            continue
        previous = metric_status(status, metric.name)
        judgement = JUDGES[metric.judge].judge(
            metric, measurement, previous, alpha=alpha_share(spec)
        )
        updated[metric.name] = _counted(previous, judgement, now)
    merged = tuple(updated.values())
    phase, message = summarize(spec, merged)
    return AnalysisStatus(phase=phase, message=message, metrics=merged)


def alpha_share(spec: ModelRolloutSpec) -> float:
    """Each sequential metric's part of the rollout's one false-rollback budget."""
    analysis = spec.strategy.analysis or AnalysisSpec()
    sequential = sum(1 for m in analysis.metrics if m.judge == Judge.SEQUENTIAL)
    return analysis.alpha / max(1, sequential)


def _counted(previous: MetricStatus, judgement: Judgement, now: datetime) -> MetricStatus:
    """The metric's status after ``judgement``. A pending judgement shows as
    INCONCLUSIVE (so ``holding_back`` holds the rollout at its step) but adds to
    no verdict counter, only to ``count``, the number of measurements taken."""
    counted = None if judgement.pending else judgement.verdict
    message = judgement.message
    if judgement.pending:
        message = f"{PENDING_MESSAGE}: {message}" if message else PENDING_MESSAGE
    return replace(
        previous,
        verdict=Verdict.INCONCLUSIVE if judgement.pending else judgement.verdict,
        # JSON (and so the API server) has no NaN or infinity.
        value=judgement.value
        if judgement.value is not None and isfinite(judgement.value)
        else None,
        message=message,
        evidence=judgement.evidence,
        measured_at=rfc3339(now),
        count=previous.count + 1,
        successful=previous.successful + (counted == Verdict.PASS),
        failed=previous.failed + (counted == Verdict.FAIL),
        inconclusive=previous.inconclusive + (counted == Verdict.INCONCLUSIVE),
        error=previous.error + (counted == Verdict.ERROR),
        consecutive_errors=previous.consecutive_errors + 1 if counted == Verdict.ERROR else 0,
        step_passes=previous.step_passes + (counted == Verdict.PASS),
        state=judgement.state,
    )


def metric_phase(metric: MetricSpec, status: MetricStatus) -> AnalysisPhase:
    if status.failed > metric.failure_limit:
        return AnalysisPhase.FAILED
    if status.consecutive_errors > metric.consecutive_error_limit:
        return AnalysisPhase.ERROR
    if status.inconclusive > metric.inconclusive_limit:
        return AnalysisPhase.INCONCLUSIVE
    return AnalysisPhase.RUNNING


_SEVERITY = [AnalysisPhase.FAILED, AnalysisPhase.ERROR, AnalysisPhase.INCONCLUSIVE]


def summarize(
    spec: ModelRolloutSpec, metrics: tuple[MetricStatus, ...]
) -> tuple[AnalysisPhase, str | None]:
    """The worst metric state wins: Failed, then Error, then Inconclusive."""
    by_name = {m.name: m for m in metrics_of(spec)}
    worst: tuple[int, str] | None = None
    for status in metrics:
        metric = by_name.get(status.name)
        if metric is None:
            continue
        phase = metric_phase(metric, status)
        if phase in _SEVERITY:
            rank = _SEVERITY.index(phase)
            if worst is None or rank < worst[0]:
                worst = (rank, _limit_message(metric, status, phase))
    if worst is None:
        return AnalysisPhase.RUNNING, None
    return _SEVERITY[worst[0]], worst[1]


def _limit_message(metric: MetricSpec, status: MetricStatus, phase: AnalysisPhase) -> str:
    detail = f" (last: {status.message})" if status.message else ""
    if phase == AnalysisPhase.FAILED:
        return (
            f"metric {metric.name!r} failed {status.failed} time(s), "
            f"more than failureLimit {metric.failure_limit}{detail}"
        )
    if phase == AnalysisPhase.ERROR:
        return (
            f"metric {metric.name!r} errored {status.consecutive_errors} time(s) in a row, "
            f"more than consecutiveErrorLimit {metric.consecutive_error_limit}{detail}"
        )
    return (
        f"metric {metric.name!r} was inconclusive {status.inconclusive} time(s), "
        f"more than inconclusiveLimit {metric.inconclusive_limit}{detail}"
    )


def holding_back(spec: ModelRolloutSpec, status: AnalysisStatus | None) -> str | None:
    """Why the rollout may not advance now: a background metric whose latest
    result is not a PASS (within its limits, but no reason to move on)."""
    for metric in metrics_of(spec):
        current = metric_status(status, metric.name)
        if metric.background and current.verdict not in (None, Verdict.PASS):
            return f"metric {metric.name!r} is {current.verdict}: {current.message}"
    return None


def missing_evidence(
    spec: ModelRolloutSpec, status: AnalysisStatus | None, since: str | None
) -> str | None:
    """Why promotion must wait: every background metric needs a PASS measured
    at the final weight (at or after ``since``)."""
    for metric in metrics_of(spec):
        if not metric.background:
            continue
        current = metric_status(status, metric.name)
        measured_late_enough = (
            current.measured_at is not None
            and since is not None
            and parse_time(current.measured_at) >= parse_time(since)
        )
        if current.verdict != Verdict.PASS or not measured_late_enough:
            return f"waiting for a passing measurement of {metric.name!r} at the final weight"
    return None


def step_satisfied(spec: ModelRolloutSpec, status: AnalysisStatus | None, step: Step) -> bool:
    """An analysis step is done when each metric it names passed ``count`` times in it."""
    assert step.analysis is not None
    return all(
        metric_status(status, name).step_passes >= step.analysis.count
        for name in step_metric_names(spec, step)
    )


def reset_step_passes(status: AnalysisStatus | None) -> AnalysisStatus | None:
    if status is None:
        return None
    return replace(status, metrics=tuple(replace(m, step_passes=0) for m in status.metrics))


def forgive_inconclusive(status: AnalysisStatus) -> AnalysisStatus:
    """A person accepted the inconclusive results: count them no more."""
    metrics = tuple(replace(m, inconclusive=0) for m in status.metrics)
    return replace(status, phase=AnalysisPhase.RUNNING, message=None, metrics=metrics)
