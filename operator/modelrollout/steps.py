"""The step list: what each step asks for, when it is done, and spec checks.

The CRD rejects most bad specs at the API server; :func:`problems` repeats the
checks the core relies on, so a spec that slipped past (an old CRD, a
``kubectl replace --validate=false``) ends in ``InvalidSpec``, never a crash
or a traffic change.
"""

from __future__ import annotations

import re
from datetime import datetime

from modelrollout import analysis, durations
from modelrollout.api import (
    MAX_WEIGHT,
    AnalysisStatus,
    Judge,
    MetricSpec,
    ModelRolloutSpec,
    Step,
)
from modelrollout.clock import seconds_since

#: The largest false-rollback budget a rollout may set (as the CRD bounds it).
MAX_ALPHA = 0.5
#: ``spec.model.uri`` as the CRD's rule reads it (RE2: ``$`` is the end of the text).
MODEL_URI = re.compile(r"models:/[^/@]+(/[0-9]+|@[A-Za-z0-9_-]+)")
#: A Kubernetes object name (DNS-1123 subdomain), as an InferenceService's name must be.
KUBERNETES_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_NAME = 253


def problems(spec: ModelRolloutSpec) -> list[str]:
    """Everything wrong with ``spec`` that the core cannot work around."""
    found: list[str] = []
    model = spec.model
    if (model.uri is None) == (model.git is None):
        found.append("spec.model: set exactly one of uri and git")
    if model.uri is not None and not MODEL_URI.fullmatch(model.uri):
        found.append(f"spec.model.uri: {model.uri!r} is not an MLflow registry URI (models:/…)")
    name = spec.target.inference_service
    if len(name) > MAX_NAME or not KUBERNETES_NAME.fullmatch(name):
        found.append(
            f"spec.target.inferenceService: {_shown(name)} is not a Kubernetes name "
            "(lowercase letters, digits, '-' and '.')"
        )
    found += _duration_problems(spec)
    alpha = spec.strategy.analysis.alpha if spec.strategy.analysis else None
    if alpha is not None and not 0 < alpha <= MAX_ALPHA:
        found.append(
            f"spec.strategy.analysis.alpha: must be more than 0 and at most {MAX_ALPHA:g}, "
            f"not {alpha:g}"
        )
    names = [m.name for m in analysis.metrics_of(spec)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        found.append(f"spec.strategy.analysis.metrics: duplicate names {duplicates}")
    for i, metric in enumerate(analysis.metrics_of(spec)):
        where = f"spec.strategy.analysis.metrics[{i}]"
        if (metric.template_ref is None) == (metric.query is None):
            found.append(f"{where}: set exactly one of templateRef and query")
        for limit, value in (
            ("failureLimit", metric.failure_limit),
            ("inconclusiveLimit", metric.inconclusive_limit),
            ("consecutiveErrorLimit", metric.consecutive_error_limit),
        ):
            if value < 0:
                found.append(f"{where}.{limit}: must be 0 or more, not {value}")
        if metric.judge != Judge.THRESHOLD and metric.template_ref is None:
            found.append(f"{where}.judge: {metric.judge} needs a templateRef with count queries")
        found += _judge_settings_problems(where, metric)
        bounds = metric.threshold_range
        if metric.judge == Judge.THRESHOLD and (
            bounds is None or (bounds.min is None and bounds.max is None)
        ):
            found.append(f"{where}.thresholdRange: the threshold judge needs a min or a max")
        elif (
            bounds and bounds.min is not None and bounds.max is not None and bounds.min > bounds.max
        ):
            found.append(f"{where}.thresholdRange: min is greater than max")
    for i, step in enumerate(spec.strategy.steps):
        found += _step_problems(f"spec.strategy.steps[{i}]", step, set(names))
    if spec.progress_deadline_seconds < 1:
        found.append("spec.progressDeadlineSeconds: must be at least 1")
    return found


def _shown(value: str, limit: int = 80) -> str:
    """``value`` for a message: quoted, escaped, and cut short if long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _judge_settings_problems(where: str, metric: MetricSpec) -> list[str]:
    """The sequential and drift settings the CRD bounds (unset means the defaults)."""
    found = []
    sequential = metric.sequential
    if sequential is not None:
        if sequential.tolerance < 0:
            found.append(f"{where}.sequential.tolerance: must be 0 or more")
        if sequential.min_samples < 1:
            found.append(f"{where}.sequential.minSamples: must be at least 1")
        if sequential.max_samples is not None and sequential.max_samples < 1:
            found.append(f"{where}.sequential.maxSamples: must be at least 1")
    drift = metric.drift
    if drift is not None:
        if drift.max < 0:
            found.append(f"{where}.drift.max: must be 0 or more")
        if drift.min_samples < 1:
            found.append(f"{where}.drift.minSamples: must be at least 1")
    return found


def _duration_problems(spec: ModelRolloutSpec) -> list[str]:
    texts: list[tuple[str, str | None]] = []
    strategy_analysis = spec.strategy.analysis
    if strategy_analysis is not None:
        texts.append(("spec.strategy.analysis.interval", strategy_analysis.interval))
        texts += [
            (f"spec.strategy.analysis.metrics[{i}].interval", m.interval)
            for i, m in enumerate(strategy_analysis.metrics)
        ]
    texts += [
        (f"spec.strategy.steps[{i}].pause.duration", s.pause.duration if s.pause else None)
        for i, s in enumerate(spec.strategy.steps)
    ]
    if spec.model.git is not None:
        texts.append(("spec.model.git.interval", spec.model.git.interval))
    found = []
    for where, text in texts:
        if text is None:
            continue
        try:
            seconds = durations.parse(text)
        except ValueError as error:
            found.append(f"{where}: {error}")
            continue
        if seconds <= 0 and not where.endswith("duration"):
            found.append(f"{where}: must be longer than zero")
    return found


def _step_problems(where: str, step: Step, metric_names: set[str]) -> list[str]:
    kinds = [k for k in (step.set_weight, step.pause, step.analysis) if k is not None]
    if len(kinds) != 1:
        return [f"{where}: set exactly one of setWeight, pause and analysis"]
    if step.set_weight is not None and not 0 <= step.set_weight <= MAX_WEIGHT:
        return [f"{where}.setWeight: {step.set_weight} is outside 0..{MAX_WEIGHT}"]
    if step.analysis is not None:
        unknown = sorted(set(step.analysis.metrics) - metric_names)
        if unknown:
            return [f"{where}.analysis.metrics: unknown metrics {unknown}"]
        if not step.analysis.metrics and not metric_names:
            return [f"{where}.analysis: there are no metrics in spec.strategy.analysis"]
        if step.analysis.count < 1:
            return [f"{where}.analysis.count: must be at least 1"]
    return []


def step_at(spec: ModelRolloutSpec, index: int | None) -> Step | None:
    steps = spec.strategy.steps
    if index is None or not 0 <= index < len(steps):
        return None
    return steps[index]


def describe(step: Step) -> str:
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.pause is not None:
        return f"pause {step.pause.duration}" if step.pause.duration else "pause until promoted"
    return "analysis"


def weight_before(spec: ModelRolloutSpec, index: int) -> int:
    """The canary weight the steps before ``index`` leave in place."""
    for step in reversed(spec.strategy.steps[:index]):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def pause_remaining(step: Step, started_at: str | None, now: datetime) -> float | None:
    """Seconds left in a timed pause; ``None`` for an indefinite one."""
    if step.pause is None or step.pause.duration is None:
        return None
    elapsed = seconds_since(started_at, now) or 0.0
    return max(0.0, durations.parse(step.pause.duration) - elapsed)


def done(
    spec: ModelRolloutSpec,
    step: Step,
    started_at: str | None,
    analysis_status: AnalysisStatus | None,
    now: datetime,
) -> bool:
    """Whether the current step has finished (traffic has already converged)."""
    if step.set_weight is not None:
        return True
    if step.pause is not None:
        remaining = pause_remaining(step, started_at, now)
        return remaining is not None and remaining <= 0
    return analysis.step_satisfied(spec, analysis_status, step)
