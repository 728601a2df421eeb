"""What the pure core reads and what it returns: observations in, a decision out.

The engine gathers :class:`Observations` through the ports (source, registry,
router, metrics), calls :func:`modelrollout.machine.decide`, then carries out
the :class:`Decision`'s actions in order and writes its status once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from modelrollout.api import ModelRolloutStatus, ModelVersionRef, Outcome, Reason


@dataclass(frozen=True)
class GateResult:
    """One registry gate's verdict on a candidate (required tag, holdout, schema)."""

    name: str
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class DesiredModel:
    """The model the source asks for, resolved by the registry, with its gates."""

    ref: ModelVersionRef
    gates: tuple[GateResult, ...] = ()


@dataclass(frozen=True)
class SourceProblem:
    """The source or registry could not say which model is wanted."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class RouteObservation:
    """What the router reads back from the InferenceService.

    ``canary_weight`` is the observed share of traffic on the canary; the
    rollout never advances until it equals the desired weight.
    """

    stable_storage_uri: str | None
    canary_storage_uri: str | None = None
    canary_weight: int = 0
    ready: bool = True
    #: What KServe calls each arm (revision or deployment name), for metric queries;
    #: names, not part of the split, so they take no part in comparisons.
    stable_revision: str | None = field(default=None, compare=False)
    canary_revision: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Measurement:
    """Numbers from a metric provider (or why there are none); judges judge them.

    ``value`` is one number (threshold judge); ``canary`` and ``stable`` are
    counts per arm since the canary started (``total``/``bad``, or histogram
    buckets keyed by their ``le`` bound) for the sequential and drift judges.
    """

    value: float | None = None
    error: str | None = None
    evidence: Mapping[str, str] = field(default_factory=dict)
    canary: Mapping[str, float] = field(default_factory=dict)
    stable: Mapping[str, float] = field(default_factory=dict)

    @property
    def no_data(self) -> bool:
        return self.value is None and self.error is None and not self.canary


@dataclass(frozen=True)
class Observations:
    desired: DesiredModel | SourceProblem | None = None
    route: RouteObservation | None = None
    measurements: Mapping[str, Measurement] = field(default_factory=dict)
    action: str | None = None
    generation: int | None = None


@dataclass(frozen=True)
class SetWeight:
    """Serve ``canary`` beside ``stable`` with ``weight`` percent on the canary."""

    stable: ModelVersionRef
    canary: ModelVersionRef
    weight: int


@dataclass(frozen=True)
class Promote:
    """Make ``model`` the only model served, at 100% (also the first deploy)."""

    model: ModelVersionRef


@dataclass(frozen=True)
class Restore:
    """Put the InferenceService spec back to ``stable`` alone (after traffic is at 0)."""

    stable: ModelVersionRef


@dataclass(frozen=True)
class WriteBack:
    """Record the outcome in the registry (alias on promotion, tags always)."""

    model: ModelVersionRef
    outcome: Outcome
    reason: Reason
    message: str = ""
    #: When the rollout decided it (RFC 3339): written as is, so a repeat changes nothing.
    at: str | None = None


RouterAction = SetWeight | Promote | Restore
ActionType = SetWeight | Promote | Restore | WriteBack


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: Reason
    message: str


@dataclass(frozen=True)
class Decision:
    status: ModelRolloutStatus
    actions: tuple[ActionType, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
