"""Notifications: Slack-compatible and generic webhooks on phase changes and rollbacks.

Two halves. What to say is pure: :func:`notification_for` turns one reconcile pass (the status
before and after it, and its events) into at most one :class:`Notification`, and
:func:`slack_payload` / :func:`generic_payload` render it; no I/O, tested alone. How to send it
is the :class:`Notifier`: the handler calls :meth:`Notifier.after_pass`, which only appends to a
bounded in-memory queue per channel, so a pass never waits for a receiver. One worker per
channel posts with aiohttp, in order, and retries 5xx, 429 and connection errors or timeouts with
exponential backoff and jitter (a 429's or 503's ``Retry-After`` is honoured); any other status
is final. When a queue is full the oldest notification is dropped, logged and counted.

What notifies: every phase change of a rollout, which covers every rollback (a rollback always
enters RollingBack, then Failed or Pending). Severity:

- ``critical``: a rollback the operator started because the canary was judged bad (analysis
  failed or errored) or stuck (progress deadline): a model hurt traffic; someone should look now;
- ``warning``: a rollback a person asked for (abort), a rollout that ended Failed (the stable is
  back, but a model failed its rollout or its gates), a pause on inconclusive analysis (a
  person must promote or abort);
- ``info``: everything else (started, promoting, promoted, paused by spec, superseded …).

Secrets: an incoming-webhook URL is itself a credential, so URLs and the signing key are read
from files (a mounted Secret, re-read at every delivery so a rotated Secret is picked up) and
never appear in a log line (only scheme and host do), a payload or an exception message: every
text sent or logged is scrubbed of them. Delivery is at least once: the same delivery id
(``X-Modelrollout-Delivery``, ``id`` in the generic payload) is sent on every retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from modelrollout import __version__, api, serde
from modelrollout.api import ModelRolloutStatus, ModelVersionRef, Outcome, Phase, Reason
from modelrollout.clock import Clock, SystemClock, rfc3339
from modelrollout.decision import Event, EventType
from modelrollout.machine import PHASE_REASON

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Modelrollout-Signature-256"
DELIVERY_HEADER = "X-Modelrollout-Delivery"
PAYLOAD_KIND = "ModelRolloutNotification"
REDACTED = "[redacted]"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return (Severity.INFO, Severity.WARNING, Severity.CRITICAL).index(self)


#: Reasons that say what routinely happens inside a phase; a headline prefers any other.
_ROUTINE = frozenset(
    {
        Reason.TRAFFIC_WEIGHT_UPDATED,
        Reason.STEP_ADVANCED,
        Reason.STEP_PROMOTED,
        Reason.WAITING_FOR_TRAFFIC,
        Reason.SOURCE_RESOLVED,
        Reason.GATES_PASSED,
        Reason.STABLE_RESTORED,
        Reason.RETRY_REQUESTED,
    }
)
# ------------------------------------------------------------------ what to say (pure)


@dataclass(frozen=True)
class Notification:
    namespace: str
    name: str
    phase: Phase
    previous_phase: Phase
    severity: Severity
    reason: Reason
    message: str
    at: datetime
    stable: ModelVersionRef | None = None
    canary: ModelVersionRef | None = None
    canary_weight: int = 0
    events: tuple[Event, ...] = ()
    cluster: str | None = None


def _read(status: Mapping[str, Any]) -> ModelRolloutStatus:
    try:
        return api.read_status(status)
    except serde.SpecError:
        return ModelRolloutStatus()


def severity_of(before: ModelRolloutStatus, after: ModelRolloutStatus, reason: Reason) -> Severity:
    """See the module docstring: the operator's own rollbacks are critical."""
    if after.phase == Phase.ROLLING_BACK and after.rollback is not None:
        if after.rollback.outcome == Outcome.ROLLED_BACK:
            return Severity.CRITICAL
        if after.rollback.outcome == Outcome.ABORTED:
            return Severity.WARNING
        return Severity.INFO
    if after.phase == Phase.FAILED:
        return Severity.WARNING
    if after.phase == Phase.PAUSED and reason == Reason.INCONCLUSIVE_ANALYSIS:
        return Severity.WARNING
    return Severity.INFO


def _headline(events: Sequence[Event], after: ModelRolloutStatus) -> tuple[Reason, str]:
    """The event that explains the pass: a warning first, else the last non-routine one."""
    for event in events:
        if event.type == EventType.WARNING:
            return event.reason, event.message
    telling = [e for e in events if e.reason not in _ROUTINE] or list(events)
    if telling:
        return telling[-1].reason, telling[-1].message
    return PHASE_REASON[after.phase], after.message or ""


def notification_for(
    namespace: str,
    name: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    events: Sequence[Event],
    at: datetime,
    cluster: str | None = None,
) -> Notification | None:
    """One pass of a rollout as a notification, or None when its phase did not change."""
    default = Phase.PENDING.value
    if before.get("phase", default) == after.get("phase", default):
        return None  # most passes: no need to read the statuses in full
    old, new = _read(before), _read(after)
    if old.phase == new.phase:
        return None
    reason, message = _headline(events, new)
    return Notification(
        namespace=namespace,
        name=name,
        phase=new.phase,
        previous_phase=old.phase,
        severity=severity_of(old, new, reason),
        reason=reason,
        message=message,
        at=at,
        stable=new.stable or old.stable,
        # A rollback or a promotion clears the canary: name the model it was about.
        canary=new.canary or old.canary,
        canary_weight=new.canary_weight,
        events=tuple(events),
        cluster=cluster,
    )


def _model(ref: ModelVersionRef | None) -> dict[str, str] | None:
    if ref is None:
        return None
    fields = {
        "uri": ref.uri,
        "name": ref.name,
        "version": ref.version,
        "runId": ref.run_id,
        "gitCommit": ref.git_commit,
    }
    return {key: value for key, value in fields.items() if value is not None}


def generic_payload(notification: Notification, delivery_id: str) -> dict[str, Any]:
    """The generic webhook's JSON (field names as Kubernetes spells them)."""
    n = notification
    payload: dict[str, Any] = {
        "kind": PAYLOAD_KIND,
        "apiVersion": api.API_VERSION,
        "id": delivery_id,
        "time": rfc3339(n.at),
        "severity": n.severity.value,
        "rollout": {"namespace": n.namespace, "name": n.name},
        "phase": n.phase.value,
        "previousPhase": n.previous_phase.value,
        "reason": n.reason.value,
        "message": n.message,
        "canaryWeight": n.canary_weight,
        "stable": _model(n.stable),
        "canary": _model(n.canary),
        "events": [
            {"type": e.type.value, "reason": e.reason.value, "message": e.message} for e in n.events
        ],
    }
    if n.cluster:
        payload["cluster"] = n.cluster
    return payload


_SLACK_STYLE = {
    Severity.INFO: (":information_source:", "#2eb886"),
    Severity.WARNING: (":warning:", "#daa038"),
    Severity.CRITICAL: (":rotating_light:", "#d00000"),
}


def _slack_escape(text: str) -> str:
    """Slack's three control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(notification: Notification) -> dict[str, Any]:
    """An incoming-webhook message: ``text`` plus one legacy attachment.

    Legacy attachments (colour bar and fields) rather than Block Kit: Mattermost, Rocket.Chat
    and Discord's ``/slack`` endpoint take them too, which is what Slack-compatible means.
    """
    n = notification
    emoji, colour = _SLACK_STYLE[n.severity]
    where = f"{n.cluster} " if n.cluster else ""
    text = (
        f"{emoji} {_slack_escape(where)}*{_slack_escape(n.namespace)}/{_slack_escape(n.name)}*: "
        f"{n.previous_phase.value} → {n.phase.value} ({n.reason.value})"
    )
    fields = [
        {"title": "Severity", "value": n.severity.value, "short": True},
        {"title": "Reason", "value": n.reason.value, "short": True},
    ]
    if n.stable is not None:
        fields.append({"title": "Stable", "value": _slack_escape(n.stable.label), "short": True})
    if n.canary is not None:
        canary = f"{n.canary.label} at {n.canary_weight}%"
        fields.append({"title": "Canary", "value": _slack_escape(canary), "short": True})
    about = n.canary or n.stable
    commit = about.git_commit if about is not None else None
    if commit:
        fields.append({"title": "Commit", "value": commit[:12], "short": True})
    return {
        "text": text,
        "attachments": [
            {
                "color": colour,
                "fallback": f"{n.namespace}/{n.name}: {n.phase.value}: {n.message}",
                "text": _slack_escape(n.message),
                "fields": fields,
                "footer": "modelrollout",
                "ts": int(n.at.timestamp()),
            }
        ],
    }


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds from ``now`` (delta-seconds or an HTTP date), if readable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def backoff_seconds(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Exponential backoff with equal jitter: half the capped step, plus up to half again.

    ``attempt`` counts from 1 (the wait after the first failure); ``jitter`` is in [0, 1).
    """
    step = min(cap, base * 2.0 ** (attempt - 1))
    return step / 2 + step / 2 * jitter


def where(url: str) -> str:
    """What a log line may say about a URL: scheme and host (and a port), never the rest."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def secrets_of(url: str, signing_key: bytes | None = None) -> tuple[str, ...]:
    """The parts of a channel that must never be shown: the URL past its host, the key."""
    parts = urlsplit(url)
    found = [url]
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail) > 1:
        found.append(tail)
    if parts.password:
        found.append(parts.password)
    if signing_key:
        found.append(signing_key.decode(errors="replace"))
    # Longest first, so a URL is redacted whole rather than around its path.
    return tuple(sorted(found, key=len, reverse=True))


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


# ------------------------------------------------------------------ how to send it


class Channel(Protocol):
    """One destination: a name for logs, its URL and key (read at each delivery), its body."""

    @property
    def name(self) -> str: ...

    def url(self) -> str: ...

    def signing_key(self) -> bytes | None: ...

    def body(self, notification: Notification, delivery_id: str) -> dict[str, Any]: ...


SecretReader = Callable[[], str]


def file_secret(path: Path) -> SecretReader:
    """A secret kept in a file (a mounted Secret): read when used, so a rotation applies."""
    return lambda: path.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class SlackChannel:
    read_url: SecretReader
    name: str = "slack"

    def url(self) -> str:
        return self.read_url()

    def signing_key(self) -> bytes | None:
        return None

    def body(self, notification: Notification, delivery_id: str) -> dict[str, Any]:
        return slack_payload(notification)


@dataclass(frozen=True)
class WebhookChannel:
    read_url: SecretReader
    read_key: SecretReader | None = None
    name: str = "webhook"

    def url(self) -> str:
        return self.read_url()

    def signing_key(self) -> bytes | None:
        return self.read_key().encode() if self.read_key else None

    def body(self, notification: Notification, delivery_id: str) -> dict[str, Any]:
        return generic_payload(notification, delivery_id)


def signature(key: bytes, body: bytes) -> str:
    """``sha256=<hex>`` of the body, as GitHub's ``X-Hub-Signature-256`` is formed."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


@dataclass
class ChannelStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0
    timeout_seconds: float = 10.0


@dataclass
class _Outbox:
    channel: Channel
    queue: deque[tuple[Notification, str]]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    busy: bool = False
    stats: ChannelStats = field(default_factory=ChannelStats)
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class _Attempt:
    ok: bool
    retry: bool
    what: str
    retry_after: float | None = None


Sleep = Callable[[float], Awaitable[None]]


class Notifier:
    """Queues each pass's notification per channel and delivers it in the background."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        min_severity: Severity = Severity.INFO,
        cluster: str | None = None,
        queue_size: int = 100,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.retry = retry or RetryPolicy()
        if queue_size < 1 or self.retry.attempts < 1:
            raise ValueError("the notification queue size and attempts must be at least 1")
        self.min_severity = min_severity
        self.cluster = cluster
        self.clock: Clock = clock or SystemClock()
        self._sleep = sleep
        self._jitter = jitter
        self._outboxes = [_Outbox(c, deque(maxlen=queue_size)) for c in channels]
        for outbox in self._outboxes:
            outbox.idle.set()
        self._session: aiohttp.ClientSession | None = None

    @property
    def stats(self) -> dict[str, ChannelStats]:
        return {o.channel.name: o.stats for o in self._outboxes}

    # -- the reconcile side: never blocks

    def after_pass(
        self,
        namespace: str,
        name: str,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        events: Sequence[Event],
    ) -> Notification | None:
        """Queue what this pass has to say, if anything; returns it."""
        found = notification_for(
            namespace, name, before, after, events, self.clock.now(), self.cluster
        )
        if found is None or found.severity.rank < self.min_severity.rank:
            return None
        self.submit(found)
        return found

    def submit(self, notification: Notification) -> None:
        delivery_id = uuid.uuid4().hex
        for outbox in self._outboxes:
            if len(outbox.queue) == outbox.queue.maxlen:
                dropped, _ = outbox.queue.popleft()
                outbox.stats.dropped += 1
                log.warning(
                    "notification queue for %s is full (%d): dropped the oldest (%s/%s %s)",
                    outbox.channel.name,
                    outbox.queue.maxlen,
                    dropped.namespace,
                    dropped.name,
                    dropped.phase.value,
                )
            outbox.queue.append((notification, delivery_id))
            outbox.idle.clear()
            outbox.wake.set()

    # -- the delivery side

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": f"modelrollout/{__version__}"},
            timeout=aiohttp.ClientTimeout(total=self.retry.timeout_seconds),
        )
        for outbox in self._outboxes:
            outbox.task = asyncio.create_task(
                self._work(outbox), name=f"notify-{outbox.channel.name}"
            )

    async def drain(self, timeout: float) -> bool:
        """Wait until every queue is empty and nothing is in flight; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                for outbox in self._outboxes:
                    await outbox.idle.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Give queued notifications ``drain_seconds`` to go out, then stop."""
        if not await self.drain(drain_seconds):
            for outbox in self._outboxes:
                left = len(outbox.queue) + outbox.busy
                if left:
                    log.warning(
                        "%d notification(s) to %s not delivered at shutdown",
                        left,
                        outbox.channel.name,
                    )
        for outbox in self._outboxes:
            if outbox.task is not None:
                outbox.task.cancel()
        await asyncio.gather(*(o.task for o in self._outboxes if o.task), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _work(self, outbox: _Outbox) -> None:
        while True:
            if not outbox.queue:
                outbox.idle.set()
                outbox.wake.clear()
                await outbox.wake.wait()
                continue
            notification, delivery_id = outbox.queue.popleft()
            outbox.busy = True
            try:
                await self._deliver(outbox, notification, delivery_id)
            finally:
                outbox.busy = False

    async def _deliver(self, outbox: _Outbox, notification: Notification, delivery_id: str) -> None:
        channel, stats = outbox.channel, outbox.stats
        subject = f"{notification.namespace}/{notification.name} {notification.phase.value}"
        for attempt in range(1, self.retry.attempts + 1):
            try:
                url, key = channel.url(), channel.signing_key()
            except OSError as error:
                stats.failed += 1
                log.error(
                    "notification to %s (%s) not sent: cannot read its secret: %s",
                    channel.name,
                    subject,
                    error.strerror or type(error).__name__,
                )
                return
            secrets = secrets_of(url, key)
            result = await self._post(url, key, secrets, channel.body(notification, delivery_id))
            if result.ok:
                stats.delivered += 1
                log.debug(
                    "notification to %s (%s) delivered: %s", channel.name, subject, result.what
                )
                return
            target = f"{channel.name} ({where(url)})"
            if not result.retry:
                stats.failed += 1
                log.error(
                    "notification to %s for %s refused, not retried: %s",
                    target,
                    subject,
                    result.what,
                )
                return
            if attempt == self.retry.attempts:
                break
            delay = result.retry_after
            if delay is None:
                delay = backoff_seconds(
                    attempt, self.retry.base_seconds, self.retry.max_seconds, self._jitter()
                )
            elif delay > self.retry.max_seconds:
                stats.failed += 1
                log.error(
                    "notification to %s for %s given up: %s asks to wait %.0f s, more than %.0f s",
                    target,
                    subject,
                    result.what,
                    delay,
                    self.retry.max_seconds,
                )
                return
            stats.retries += 1
            log.warning(
                "notification to %s for %s failed (%s); attempt %d of %d in %.1f s",
                target,
                subject,
                result.what,
                attempt + 1,
                self.retry.attempts,
                delay,
            )
            await self._sleep(delay)
        stats.failed += 1
        log.error(
            "notification to %s (%s) for %s given up after %d attempts: %s",
            channel.name,
            where(url),
            subject,
            self.retry.attempts,
            result.what,
        )

    async def _post(
        self, url: str, key: bytes | None, secrets: Sequence[str], payload: dict[str, Any]
    ) -> _Attempt:
        assert self._session is not None, "Notifier.start() was not awaited"
        body = scrub(json.dumps(payload, ensure_ascii=False), secrets).encode()
        headers = {"Content-Type": "application/json"}
        if isinstance(payload.get("id"), str):
            headers[DELIVERY_HEADER] = payload["id"]
        if key:
            headers[SIGNATURE_HEADER] = signature(key, body)
        try:
            # No redirects: a secret URL's body must reach the host it names, or nobody.
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return _Attempt(ok=True, retry=False, what=f"HTTP {response.status}")
                detail = scrub((await response.text(errors="replace"))[:200], secrets).strip()
                what = f"HTTP {response.status}" + (f": {detail}" if detail else "")
                retry = response.status == 429 or response.status >= 500
                wait = retry_after_seconds(response.headers.get("Retry-After"), self.clock.now())
                return _Attempt(ok=False, retry=retry, what=what, retry_after=wait)
        except (aiohttp.InvalidURL, ValueError):
            return _Attempt(ok=False, retry=False, what="the URL is not a valid http(s) URL")
        except TimeoutError:
            return _Attempt(
                ok=False, retry=True, what=f"no answer within {self.retry.timeout_seconds:g} s"
            )
        except aiohttp.ClientError as error:
            # aiohttp's messages may carry the URL: keep only what is not secret.
            what = scrub(f"{type(error).__name__}: {error}", secrets)
            return _Attempt(ok=False, retry=True, what=what)
