"""The typed API of ``modelrollout.io/v1alpha1``, mirroring ``crds/``.

The CRD YAML is the single source of the schema; these frozen dataclasses are
how the code reads it, and ``tests/test_api_matches_crd.py`` keeps the two in
step (every schema field has a dataclass field, the reverse, and the same
defaults). Lists are tuples so specs and statuses are immutable values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelrollout import serde

GROUP = "modelrollout.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
ROLLOUT_KIND = "ModelRollout"
ROLLOUT_PLURAL = "modelrollouts"
TEMPLATE_KIND = "MetricTemplate"
TEMPLATE_PLURAL = "metrictemplates"

#: One-shot requests from people (the CLI sets it): ``<action>`` or
#: ``<action>:<nonce>``; a value is acted on once, then remembered in
#: ``status.lastAction`` so a restart never repeats it.
ACTION_ANNOTATION = f"{GROUP}/action"

MAX_WEIGHT = 100
MAX_HISTORY = 100
MAX_FAILED_VERSIONS = 50


class Phase(StrEnum):
    PENDING = "Pending"
    INITIALIZING = "Initializing"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    FAILED = "Failed"


class Router(StrEnum):
    KSERVE_SERVERLESS = "kserve-serverless"
    KSERVE_RAW = "kserve-raw"


class Judge(StrEnum):
    THRESHOLD = "threshold"
    SEQUENTIAL = "sequential"
    DRIFT = "drift"


class DriftStatistic(StrEnum):
    PSI = "psi"
    KS = "ks"


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"


class AnalysisPhase(StrEnum):
    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class Direction(StrEnum):
    LOWER_IS_BETTER = "lowerIsBetter"
    HIGHER_IS_BETTER = "higherIsBetter"


class Action(StrEnum):
    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    ABORT = "abort"
    RETRY = "retry"


class Outcome(StrEnum):
    INITIALIZED = "Initialized"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"
    GATE_FAILED = "GateFailed"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    HEALTHY = "Healthy"
    SOURCE_READY = "SourceReady"
    GATED = "Gated"
    ALIAS_DRIFT = "AliasDrift"


#: How reasons look in the CRD: a pattern (as metav1.Condition has), not an enum,
#: so an operator that adds a reason never has its status refused by an older CRD
#: (Helm does not upgrade CRDs).
REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Reason(StrEnum):
    """Condition and event reasons; tests assert these, never free text."""

    # spec and source
    INVALID_SPEC = "InvalidSpec"
    WAITING_FOR_SOURCE = "WaitingForSource"
    SOURCE_RESOLVED = "SourceResolved"
    SOURCE_ERROR = "SourceError"
    SOURCE_UNTRUSTED = "SourceUntrusted"
    STORAGE_UNSUPPORTED = "StorageUnsupported"
    ALIAS_DRIFT = "AliasDrift"
    ALIAS_PINNED = "AliasPinned"
    # gates
    GATES_PASSED = "GatesPassed"
    GATE_FAILED = "GateFailed"
    PREVIOUSLY_FAILED = "PreviouslyFailed"
    RETRY_REQUESTED = "RetryRequested"
    # progress
    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    ROLLOUT_STARTED = "RolloutStarted"
    TRAFFIC_WEIGHT_UPDATED = "TrafficWeightUpdated"
    WAITING_FOR_TRAFFIC = "WaitingForTraffic"
    STEP_ADVANCED = "StepAdvanced"
    STEP_PROMOTED = "StepPromoted"
    ROLLOUT_PAUSED = "RolloutPaused"
    ROLLOUT_RESUMED = "RolloutResumed"
    WAITING_FOR_ANALYSIS = "WaitingForAnalysis"
    PAUSED_BY_SPEC = "PausedBySpec"
    HOLDING = "Holding"
    PROMOTING = "Promoting"
    ROLLOUT_PROMOTED = "RolloutPromoted"
    ROLLOUT_COMPLETED = "RolloutCompleted"
    STABLE_RESTORED = "StableRestored"
    SERVING = "Serving"
    # analysis
    ANALYSIS_PASSING = "AnalysisPassing"
    ANALYSIS_FAILED = "AnalysisFailed"
    ANALYSIS_ERROR = "AnalysisError"
    INCONCLUSIVE_ANALYSIS = "InconclusiveAnalysis"
    NO_ANALYSIS = "NoAnalysis"
    # ends
    ROLLOUT_ABORTED = "RolloutAborted"
    ROLLBACK_STARTED = "RollbackStarted"
    ROLLED_BACK = "RolledBack"
    SUPERSEDED = "Superseded"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    INVALID_ACTION = "InvalidAction"
    #: An action (a router change, a registry write-back) failed; the pass is retried.
    ACTION_FAILED = "ActionFailed"


# ---------------------------------------------------------------- spec


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str | None = None


@dataclass(frozen=True)
class LocalObjectRef:
    name: str


@dataclass(frozen=True)
class SignatureVerification:
    allowed_signers_secret_ref: SecretKeyRef


@dataclass(frozen=True)
class GitSource:
    repository: str
    path: str
    ref: str = "main"
    interval: str = "1m"
    secret_ref: SecretKeyRef | None = None
    verify: SignatureVerification | None = None


@dataclass(frozen=True)
class ModelSource:
    uri: str | None = None
    git: GitSource | None = None


@dataclass(frozen=True)
class TargetSpec:
    inference_service: str
    router: Router = Router.KSERVE_SERVERLESS
    predictor: dict[str, Any] | None = None


@dataclass(frozen=True)
class HoldoutGate:
    metric: str
    direction: Direction = Direction.LOWER_IS_BETTER
    max_regression: float = 0.0


@dataclass(frozen=True)
class RegistryGates:
    required_tags: dict[str, str] = field(default_factory=dict)
    holdout: tuple[HoldoutGate, ...] = ()
    schema_compatibility: bool = False


@dataclass(frozen=True)
class WriteBack:
    enabled: bool = True
    alias: str | None = None
    tag_prefix: str = "modelrollout"


@dataclass(frozen=True)
class RegistrySpec:
    tracking_uri: str | None = None
    secret_ref: SecretKeyRef | None = None
    gates: RegistryGates | None = None
    write_back: WriteBack | None = None


@dataclass(frozen=True)
class ThresholdRange:
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class SequentialSpec:
    """The sequential judge: the canary's bad-event rate (or latency distribution)
    compared with the stable's, anytime-valid."""

    #: How much worse the canary may be and still count as no worse: 0.1 lets its
    #: bad-event rate be up to 10% above the stable's.
    tolerance: float = 0.2
    #: Canary events needed before any verdict.
    min_samples: int = 100
    #: Canary events after which a canary with no evidence of harm passes: with rare
    #: errors, proving "within tolerance" can take far longer than proving harm.
    max_samples: int | None = 10_000


@dataclass(frozen=True)
class DriftSpec:
    """The drift judge: the canary's prediction histogram against the stable's."""

    statistic: DriftStatistic = DriftStatistic.PSI
    max: float = 0.2
    min_samples: int = 100


@dataclass(frozen=True)
class MetricSpec:
    name: str
    template_ref: LocalObjectRef | None = None
    query: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    judge: Judge = Judge.THRESHOLD
    threshold_range: ThresholdRange | None = None
    sequential: SequentialSpec | None = None
    drift: DriftSpec | None = None
    interval: str | None = None
    background: bool = True
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4


@dataclass(frozen=True)
class AnalysisSpec:
    interval: str = "1m"
    #: One false-rollback budget for the whole rollout, shared by its sequential metrics.
    alpha: float = 0.05
    metrics: tuple[MetricSpec, ...] = ()


@dataclass(frozen=True)
class PauseStep:
    duration: str | None = None


@dataclass(frozen=True)
class AnalysisStep:
    metrics: tuple[str, ...] = ()
    count: int = 1


@dataclass(frozen=True)
class Step:
    set_weight: int | None = None
    pause: PauseStep | None = None
    analysis: AnalysisStep | None = None


@dataclass(frozen=True)
class Strategy:
    steps: tuple[Step, ...] = ()
    analysis: AnalysisSpec | None = None


@dataclass(frozen=True)
class ModelRolloutSpec:
    model: ModelSource
    target: TargetSpec
    strategy: Strategy = field(default_factory=Strategy)
    registry: RegistrySpec | None = None
    paused: bool = False
    progress_deadline_seconds: int = 600
    history_limit: int = 10


# ---------------------------------------------------------------- status


@dataclass(frozen=True)
class DatasetRef:
    """A dataset the model's training run logged as an input."""

    name: str
    digest: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class ModelVersionRef:
    """An immutable model identity: what the registry resolved a URI to, with the
    provenance an audit needs (manifest commit, training code commit, datasets)."""

    uri: str
    storage_uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    git_commit: str | None = None
    git_author: str | None = None
    git_time: str | None = None
    source_commit: str | None = None
    datasets: tuple[DatasetRef, ...] = ()

    @property
    def key(self) -> str:
        """What identifies the version across aliases: ``name/version``."""
        if self.name and self.version:
            return f"{self.name}/{self.version}"
        return self.storage_uri

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.name and self.version else self.uri


@dataclass(frozen=True)
class MetricStatus:
    name: str
    verdict: Verdict | None = None
    value: float | None = None
    message: str | None = None
    measured_at: str | None = None
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_errors: int = 0
    step_passes: int = 0
    evidence: dict[str, str] = field(default_factory=dict)
    #: What a judge carries from one check to the next (opaque to everyone else).
    state: str | None = None


@dataclass(frozen=True)
class AnalysisStatus:
    phase: AnalysisPhase = AnalysisPhase.RUNNING
    message: str | None = None
    metrics: tuple[MetricStatus, ...] = ()


@dataclass(frozen=True)
class Condition:
    type: ConditionType
    status: ConditionStatus
    reason: Reason
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


@dataclass(frozen=True)
class RollbackStatus:
    outcome: Outcome
    reason: Reason
    message: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    model: ModelVersionRef
    outcome: Outcome
    reason: Reason
    message: str = ""
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class ModelRolloutStatus:
    phase: Phase = Phase.PENDING
    message: str | None = None
    observed_generation: int | None = None
    stable: ModelVersionRef | None = None
    canary: ModelVersionRef | None = None
    current_step_index: int | None = None
    canary_weight: int = 0
    canary_started_at: str | None = None
    step_started_at: str | None = None
    progress_at: str | None = None
    rollback: RollbackStatus | None = None
    analysis: AnalysisStatus | None = None
    conditions: tuple[Condition, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    failed_versions: tuple[str, ...] = ()
    last_action: str | None = None


# ---------------------------------------------------------------- MetricTemplate


@dataclass(frozen=True)
class PrometheusProvider:
    address: str
    secret_ref: SecretKeyRef | None = None
    timeout: str = "10s"


@dataclass(frozen=True)
class ProviderSpec:
    prometheus: PrometheusProvider


@dataclass(frozen=True)
class CountQueries:
    """Per-arm counts for the sequential judge: totals and bad events."""

    total: str | None = None
    bad: str | None = None
    buckets: str | None = None


@dataclass(frozen=True)
class MetricTemplateSpec:
    provider: ProviderSpec
    query: str | None = None
    counts: CountQueries | None = None
    description: str | None = None


def read_spec(data: Any) -> ModelRolloutSpec:
    return serde.from_json(ModelRolloutSpec, data, "spec")


def read_status(data: Any) -> ModelRolloutStatus:
    return serde.from_json(ModelRolloutStatus, data or {}, "status")


def read_template(data: Any) -> MetricTemplateSpec:
    return serde.from_json(MetricTemplateSpec, data, "spec")
