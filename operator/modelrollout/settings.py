"""Operator settings from the environment (the chart and the sandbox set them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PREFIX = "MODELROLLOUT_"


@dataclass(frozen=True)
class Settings:
    #: How soon a pass that failed (an action the API server refused, an unexpected error)
    #: runs again.
    timer_seconds: float = 5.0
    #: The longest a rollout goes without a pass. Each pass runs when the core says the
    #: rollout is next due (a pause's end, an analysis interval, a git source's ``interval``),
    #: or after this at the latest: how soon a rollout sees an alias move in the registry or
    #: a changed MetricTemplate or Secret. Changes on the API server of the rollout and its
    #: InferenceService are watched and run a pass at once.
    resync_seconds: float = 30.0
    #: Kubernetes API calls in flight at once (the client blocks a thread per call).
    api_threads: int = 32
    #: Namespaces to watch; empty = the whole cluster.
    namespaces: tuple[str, ...] = ()
    #: ``mlflow`` (the default) or ``static:<storage-base>`` (no registry server).
    registry: str = "mlflow"
    #: The MLflow tracking server for rollouts that name none.
    mlflow_tracking_uri: str | None = None
    #: ``prefix=replacement,…``: artifact-store URIs to URIs KServe can load.
    storage_map: str = ""
    registry_aliases: Path | None = None
    registry_journal: Path | None = None
    #: The Prometheus for inline queries and templates that name none.
    prometheus_url: str | None = None
    #: ``static:<file>``: metric values from a JSON file instead of Prometheus.
    metrics: str = ""
    query_timeout_seconds: float = 10.0
    #: How long one Kubernetes API call may take before the operator gives up on it and
    #: retries: a request the API server (or a proxy on the way) never answers must not
    #: stall a rollout. Watches are long by design; kopf drops one after 70 s of silence.
    kube_request_timeout_seconds: float = 30.0
    git_cache: Path = Path("/tmp/modelrollout-git")
    #: Allow ``file://`` repositories (the sandbox and tests); off on a cluster.
    git_allow_file: bool = False
    #: ``host:port`` for the git push webhook; unset: no webhook (polling only).
    webhook_address: str | None = None
    webhook_secret: str | None = None
    #: The webhook's limits (gitsource.webhook.Limits): requests a second and burst per peer
    #: address, requests in progress at once, seconds for the headers and for the body.
    webhook_rate_per_second: float = 5.0
    webhook_burst: int = 50
    webhook_max_concurrent: int = 8
    webhook_timeout_seconds: float = 10.0
    log_level: str = "INFO"
    liveness_endpoint: str | None = None
    #: ``host:port`` for /metrics, /healthz and /readyz; unset: no such server.
    metrics_address: str | None = None
    #: kopf peering object for leader election between replicas; unset: standalone.
    peering: str | None = None
    #: This replica's peering priority; unset: a random one (kopf pauses every peer when
    #: live peers share a priority, and the pods of one Deployment cannot be told apart).
    peering_priority: int | None = None
    #: Notifications (modelrollout.notify): files holding a Slack-compatible incoming-webhook
    #: URL, a generic webhook URL and its HMAC-SHA256 signing key. Files (a mounted Secret),
    #: never values: a webhook URL is a credential. No URL file: no notifications.
    notify_slack_url_file: Path | None = None
    notify_webhook_url_file: Path | None = None
    notify_webhook_signing_key_file: Path | None = None
    #: ``info``, ``warning`` or ``critical``: the least severe notification sent.
    notify_min_severity: str = "info"
    #: A name for this cluster in every notification; unset: none.
    notify_cluster: str | None = None
    notify_attempts: int = 5
    notify_queue_size: int = 100
    notify_timeout_seconds: float = 10.0


def from_env(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        return env.get(PREFIX + name) or None

    def path(name: str) -> Path | None:
        value = get(name)
        return Path(value) if value else None

    namespaces = tuple(n.strip() for n in (get("NAMESPACES") or "").split(",") if n.strip())
    return Settings(
        timer_seconds=float(get("TIMER_SECONDS") or Settings.timer_seconds),
        resync_seconds=float(get("RESYNC_SECONDS") or Settings.resync_seconds),
        api_threads=int(get("API_THREADS") or Settings.api_threads),
        namespaces=namespaces,
        registry=get("REGISTRY") or Settings.registry,
        mlflow_tracking_uri=get("MLFLOW_TRACKING_URI") or env.get("MLFLOW_TRACKING_URI") or None,
        storage_map=get("STORAGE_MAP") or "",
        registry_aliases=path("REGISTRY_ALIASES"),
        registry_journal=path("REGISTRY_JOURNAL"),
        prometheus_url=get("PROMETHEUS_URL"),
        metrics=get("METRICS") or "",
        query_timeout_seconds=float(get("QUERY_TIMEOUT_SECONDS") or 10.0),
        kube_request_timeout_seconds=float(
            get("KUBE_REQUEST_TIMEOUT_SECONDS") or Settings.kube_request_timeout_seconds
        ),
        git_cache=path("GIT_CACHE") or Settings.git_cache,
        git_allow_file=get("GIT_ALLOW_FILE") in ("1", "true", "yes"),
        webhook_address=get("WEBHOOK_ADDRESS"),
        webhook_secret=get("WEBHOOK_SECRET"),
        webhook_rate_per_second=float(
            get("WEBHOOK_RATE_PER_SECOND") or Settings.webhook_rate_per_second
        ),
        webhook_burst=int(get("WEBHOOK_BURST") or Settings.webhook_burst),
        webhook_max_concurrent=int(
            get("WEBHOOK_MAX_CONCURRENT") or Settings.webhook_max_concurrent
        ),
        webhook_timeout_seconds=float(
            get("WEBHOOK_TIMEOUT_SECONDS") or Settings.webhook_timeout_seconds
        ),
        log_level=get("LOG_LEVEL") or "INFO",
        liveness_endpoint=get("LIVENESS_ENDPOINT"),
        metrics_address=get("METRICS_ADDRESS"),
        peering=get("PEERING"),
        peering_priority=int(priority) if (priority := get("PEERING_PRIORITY")) else None,
        notify_slack_url_file=path("NOTIFY_SLACK_URL_FILE"),
        notify_webhook_url_file=path("NOTIFY_WEBHOOK_URL_FILE"),
        notify_webhook_signing_key_file=path("NOTIFY_WEBHOOK_SIGNING_KEY_FILE"),
        notify_min_severity=get("NOTIFY_MIN_SEVERITY") or Settings.notify_min_severity,
        notify_cluster=get("NOTIFY_CLUSTER"),
        notify_attempts=int(get("NOTIFY_ATTEMPTS") or Settings.notify_attempts),
        notify_queue_size=int(get("NOTIFY_QUEUE_SIZE") or Settings.notify_queue_size),
        notify_timeout_seconds=float(
            get("NOTIFY_TIMEOUT_SECONDS") or Settings.notify_timeout_seconds
        ),
    )
