"""Notifications (modelrollout.notify): what a pass says, and how it reaches a webhook.

Covers: a pass notifies only when its phase changes, with the headline event and a severity
(the operator's own rollback critical; abort, Failed and inconclusive pauses warning; the rest
info); the Slack-compatible and generic payloads; Retry-After and backoff arithmetic. Then,
against a real aiohttp receiver on 127.0.0.1: 500, 429 with Retry-After, timeouts and refused
connections are retried with backoff (the sleep is injected, so nothing waits for real
backoff), other 4xx and redirects are not, attempts are bounded, the generic webhook is signed
(HMAC-SHA256) with one delivery id across retries, the queue is bounded and drops the oldest,
secret files are re-read, and no URL path, token or signing key reaches a log line or a payload.
The settings, the wiring and the chart's rendering of the Secret. End-to-end (marker ``e2e``):
the real operator, the API emulator and the local KServe controller: a promotion and an
automatic rollback each notify the receiver on both channels.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from aiohttp import web

import planted
from modelrollout import api, notify, serde, settings, wiring
from modelrollout.api import (
    ModelRolloutStatus,
    ModelVersionRef,
    Outcome,
    Phase,
    Reason,
    RollbackStatus,
)
from modelrollout.decision import Event, EventType
from modelrollout.notify import Notification, Notifier, RetryPolicy, Severity
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from processes import Kubectl, kserve_controller, operator, running, wait_for

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 27, 6, 30, tzinfo=UTC)
TOKEN = "T0KEN-b7d1e4a9c2f65e08"
SIGNING_KEY = "hmac-key-5f2c9a7e31d4"
V1 = ModelVersionRef(uri="models:/fraud/1", storage_uri="s3://m/fraud/1", name="fraud", version="1")
V2 = ModelVersionRef(
    uri="models:/fraud/2",
    storage_uri="s3://m/fraud/2",
    name="fraud",
    version="2",
    run_id="r2",
    git_commit="0123456789abcdef0123",
)


def status(**fields: Any) -> dict[str, Any]:
    return serde.to_json(ModelRolloutStatus(**fields))


def event(reason: Reason, message: str = "", warning: bool = False) -> Event:
    return Event(EventType.WARNING if warning else EventType.NORMAL, reason, message or reason)


def notification_of(
    before: dict[str, Any], after: dict[str, Any], *events: Event
) -> Notification | None:
    return notify.notification_for("ml", "fraud", before, after, events, NOW)


# --- What a pass says (pure) ----------------------------------------------------------------


def test_a_pass_that_keeps_its_phase_says_nothing() -> None:
    progressing = status(phase=Phase.PROGRESSING, stable=V1, canary=V2, canary_weight=25)
    moved = status(phase=Phase.PROGRESSING, stable=V1, canary=V2, canary_weight=50)
    assert notification_of(progressing, moved, event(Reason.TRAFFIC_WEIGHT_UPDATED)) is None


def test_a_canary_start_is_one_info_notification_headed_by_its_reason() -> None:
    """Given a stable v1, when the pass starts canary v2 (two events), then one notification
    says so, with RolloutStarted rather than the routine weight change as its headline."""
    found = notification_of(
        status(phase=Phase.SUCCEEDED, stable=V1),
        status(phase=Phase.PROGRESSING, stable=V1, canary=V2, canary_weight=25),
        event(Reason.ROLLOUT_STARTED, "canary fraud v2 started beside stable fraud v1"),
        event(Reason.TRAFFIC_WEIGHT_UPDATED, "canary weight 0% -> 25%"),
    )
    assert found is not None
    assert (found.previous_phase, found.phase) == (Phase.SUCCEEDED, Phase.PROGRESSING)
    assert (found.severity, found.reason) == (Severity.INFO, Reason.ROLLOUT_STARTED)
    assert found.message == "canary fraud v2 started beside stable fraud v1"
    assert (found.stable, found.canary, found.canary_weight) == (V1, V2, 25)
    assert len(found.events) == 2


def _rolling_back(outcome: Outcome, reason: Reason) -> dict[str, Any]:
    return status(
        phase=Phase.ROLLING_BACK,
        stable=V1,
        canary=V2,
        rollback=RollbackStatus(outcome=outcome, reason=reason, message="why"),
    )


PROGRESSING = status(phase=Phase.PROGRESSING, stable=V1, canary=V2, canary_weight=25)


@pytest.mark.parametrize(
    ("before", "after", "events", "severity", "reason"),
    [
        (
            PROGRESSING,
            _rolling_back(Outcome.ROLLED_BACK, Reason.ANALYSIS_FAILED),
            [event(Reason.TRAFFIC_WEIGHT_UPDATED), event(Reason.ANALYSIS_FAILED, warning=True)],
            Severity.CRITICAL,
            Reason.ANALYSIS_FAILED,
        ),
        (
            PROGRESSING,
            _rolling_back(Outcome.ROLLED_BACK, Reason.PROGRESS_DEADLINE_EXCEEDED),
            [event(Reason.PROGRESS_DEADLINE_EXCEEDED, warning=True)],
            Severity.CRITICAL,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
        ),
        (
            PROGRESSING,
            _rolling_back(Outcome.ABORTED, Reason.ROLLOUT_ABORTED),
            [event(Reason.ROLLOUT_ABORTED, warning=True)],
            Severity.WARNING,
            Reason.ROLLOUT_ABORTED,
        ),
        (
            PROGRESSING,
            _rolling_back(Outcome.SUPERSEDED, Reason.SUPERSEDED),
            [event(Reason.SUPERSEDED)],
            Severity.INFO,
            Reason.SUPERSEDED,
        ),
        (
            _rolling_back(Outcome.ROLLED_BACK, Reason.ANALYSIS_FAILED),
            status(phase=Phase.FAILED, stable=V1, failed_versions=("fraud/2",)),
            [event(Reason.STABLE_RESTORED), event(Reason.ROLLED_BACK, warning=True)],
            Severity.WARNING,
            Reason.ROLLED_BACK,
        ),
        (
            PROGRESSING,
            status(phase=Phase.PAUSED, stable=V1, canary=V2),
            [event(Reason.INCONCLUSIVE_ANALYSIS)],
            Severity.WARNING,
            Reason.INCONCLUSIVE_ANALYSIS,
        ),
        (
            PROGRESSING,
            status(phase=Phase.PAUSED, stable=V1, canary=V2),
            [event(Reason.PAUSED_BY_SPEC)],
            Severity.INFO,
            Reason.PAUSED_BY_SPEC,
        ),
        (
            status(phase=Phase.PROMOTING, stable=V1, canary=V2, canary_weight=100),
            status(phase=Phase.SUCCEEDED, stable=V2),
            [event(Reason.ROLLOUT_PROMOTED, "fraud v2 promoted to stable")],
            Severity.INFO,
            Reason.ROLLOUT_PROMOTED,
        ),
        (
            status(phase=Phase.SUCCEEDED, stable=V1),
            status(phase=Phase.FAILED, stable=V1),
            [event(Reason.GATE_FAILED, warning=True)],
            Severity.WARNING,
            Reason.GATE_FAILED,
        ),
        ({}, status(phase=Phase.PENDING, message="waiting"), [], None, None),
        (
            status(phase=Phase.SUCCEEDED, stable=V1),
            status(phase=Phase.PROGRESSING, stable=V1, canary=V2, message="hand-written"),
            [],
            Severity.INFO,
            Reason.ROLLOUT_STARTED,
        ),
    ],
    ids=[
        "analysis-rollback",
        "deadline-rollback",
        "abort",
        "superseded",
        "failed",
        "inconclusive-pause",
        "spec-pause",
        "promoted",
        "gate-failed",
        "no-change-from-empty",
        "no-event",
    ],
)
def test_severity_and_headline_of_each_transition(
    before: dict[str, Any],
    after: dict[str, Any],
    events: list[Event],
    severity: Severity | None,
    reason: Reason | None,
) -> None:
    found = notification_of(before, after, *events)
    if severity is None:
        assert found is None
        return
    assert found is not None
    assert (found.severity, found.reason) == (severity, reason)


def test_a_finished_rollout_still_names_the_model_it_was_about() -> None:
    """Promotion and rollback clear the canary from status; the notification keeps it."""
    found = notification_of(
        _rolling_back(Outcome.ROLLED_BACK, Reason.ANALYSIS_FAILED),
        status(phase=Phase.FAILED, stable=V1),
        event(Reason.ROLLED_BACK, "fraud v2: metric failed", warning=True),
    )
    assert found is not None
    assert (found.stable, found.canary) == (V1, V2)


def _rollback_notification(message: str = "rolling back fraud v2: errors failed") -> Notification:
    found = notify.notification_for(
        "ml",
        "fraud",
        PROGRESSING,
        _rolling_back(Outcome.ROLLED_BACK, Reason.ANALYSIS_FAILED),
        [
            event(Reason.TRAFFIC_WEIGHT_UPDATED, "canary weight 25% -> 0%"),
            event(Reason.ANALYSIS_FAILED, message, warning=True),
        ],
        NOW,
        cluster="prod-eu",
    )
    assert found is not None
    return found


def test_the_generic_payload_carries_rollout_phase_severity_models_and_time() -> None:
    assert notify.generic_payload(_rollback_notification(), "d1") == {
        "kind": "ModelRolloutNotification",
        "apiVersion": api.API_VERSION,
        "id": "d1",
        "time": "2026-11-27T06:30:00Z",
        "cluster": "prod-eu",
        "severity": "critical",
        "rollout": {"namespace": "ml", "name": "fraud"},
        "phase": "RollingBack",
        "previousPhase": "Progressing",
        "reason": "AnalysisFailed",
        "message": "rolling back fraud v2: errors failed",
        "canaryWeight": 0,
        "stable": {"uri": "models:/fraud/1", "name": "fraud", "version": "1"},
        "canary": {
            "uri": "models:/fraud/2",
            "name": "fraud",
            "version": "2",
            "runId": "r2",
            "gitCommit": "0123456789abcdef0123",
        },
        "events": [
            {
                "type": "Normal",
                "reason": "TrafficWeightUpdated",
                "message": "canary weight 25% -> 0%",
            },
            {
                "type": "Warning",
                "reason": "AnalysisFailed",
                "message": "rolling back fraud v2: errors failed",
            },
        ],
    }


def test_the_slack_payload_is_text_plus_a_coloured_attachment_escaped() -> None:
    payload = notify.slack_payload(_rollback_notification("p99 <2s> & rising"))
    assert payload["text"] == (
        ":rotating_light: prod-eu *ml/fraud*: Progressing → RollingBack (AnalysisFailed)"
    )
    (attachment,) = payload["attachments"]
    assert attachment["color"] == "#d00000"
    assert attachment["text"] == "p99 &lt;2s&gt; &amp; rising"
    assert attachment["ts"] == int(NOW.timestamp())
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields == {
        "Severity": "critical",
        "Reason": "AnalysisFailed",
        "Stable": "fraud v1",
        "Canary": "fraud v2 at 0%",
        "Commit": "0123456789ab",
    }


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("soon", None),
        ("-3", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert notify.retry_after_seconds(header, NOW) == seconds


def test_backoff_doubles_up_to_the_cap_with_jitter_within_half_a_step() -> None:
    assert [notify.backoff_seconds(a, 1.0, 8.0, 0.0) for a in range(1, 6)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
    ]
    assert [notify.backoff_seconds(a, 1.0, 8.0, 0.999) for a in range(1, 6)] == pytest.approx(
        [1.0, 2.0, 4.0, 8.0, 8.0], abs=0.01
    )


def test_logs_may_name_the_host_but_nothing_past_it() -> None:
    url = f"https://user:pw@hooks.example.com:8443/services/{TOKEN}?k=v"
    assert notify.where(url) == "https://hooks.example.com:8443"
    secrets = notify.secrets_of(url, SIGNING_KEY.encode())
    text = f"failed {url} then /services/{TOKEN}?k=v with {SIGNING_KEY} and pw"
    scrubbed = notify.scrub(text, secrets)
    assert TOKEN not in scrubbed
    assert SIGNING_KEY not in scrubbed
    assert scrubbed.count(notify.REDACTED) == 4


# --- A real receiver --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: Answer only after this long (a receiver that hangs).
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An aiohttp server on 127.0.0.1 in its own thread and loop: each path answers with its
    planned replies in turn (then 200) and every request is recorded."""

    def __init__(self) -> None:
        self._plans: dict[str, list[Reply]] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # No access log: it would print the secret paths the operator must never log.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self._received.append(Received(request.path_qs, dict(request.headers), body))
            plan = self._plans.get(request.path, [])
            reply = plan.pop(0) if plan else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, text="answer")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, *replies: Reply) -> str:
        with self._lock:
            self._plans[path] = list(replies)
        return self.url(path)

    def paths(self) -> set[str]:
        with self._lock:
            return {r.path.split("?")[0] for r in self._received}

    def received(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self._received if r.path.split("?")[0] == path]

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "the receiver did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
    # Every body it got, for the planted-secrets scan (tests/planted.py).
    bodies = [r.body for path in running.paths() for r in running.received(path)]
    planted.dump_bodies(tmp_path_factory.getbasetemp() / "notifications-received", bodies)


class Sleeps:
    """The injected sleep: records each backoff and yields without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def notifier(
    *channels: notify.Channel,
    sleeps: Sleeps | None = None,
    attempts: int = 4,
    timeout: float = 5.0,
    queue_size: int = 10,
) -> Notifier:
    return Notifier(
        channels,
        queue_size=queue_size,
        retry=RetryPolicy(
            attempts=attempts, base_seconds=1.0, max_seconds=30.0, timeout_seconds=timeout
        ),
        clock=FixedClock(),
        sleep=sleeps or Sleeps(),
        jitter=lambda: 0.5,
    )


async def deliver(running: Notifier, *notifications: Notification) -> None:
    await running.start()
    try:
        for n in notifications:
            running.submit(n)
        assert await running.drain(20), "the notifications were not delivered in time"
    finally:
        await running.stop(0)


def secret_free(caplog: pytest.LogCaptureFixture, *bodies: bytes) -> None:
    for text in (caplog.text, *(b.decode() for b in bodies)):
        assert TOKEN not in text
        assert SIGNING_KEY not in text


@pytest.mark.asyncio
async def test_slack_is_retried_on_500_then_waits_out_429s_retry_after(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a Slack URL that answers 500, then 429 with Retry-After 7, then 200, when a
    rollback notifies, then it is delivered on the third attempt after a backoff and 7 s, and
    the logs name the host but never the URL's token."""
    caplog.set_level(logging.DEBUG)
    path = f"/slack/services/{TOKEN}"
    url = receiver.plan(path, Reply(500), Reply(429, {"Retry-After": "7"}))
    sleeps = Sleeps()
    running = notifier(notify.SlackChannel(lambda: url), sleeps=sleeps)

    await deliver(running, _rollback_notification())

    posts = receiver.received(path)
    assert len(posts) == 3
    assert all(p.json() == notify.slack_payload(_rollback_notification()) for p in posts)
    assert posts[0].headers["Content-Type"] == "application/json"
    assert sleeps.waits == [notify.backoff_seconds(1, 1.0, 30.0, 0.5), 7.0]
    stats = running.stats["slack"]
    assert (stats.delivered, stats.retries, stats.failed) == (1, 2, 0)
    assert f"http://127.0.0.1:{receiver.port}" in caplog.text
    assert "HTTP 500" in caplog.text
    assert "HTTP 429" in caplog.text
    secret_free(caplog, *(p.body for p in posts))


@pytest.mark.asyncio
async def test_the_generic_webhook_is_signed_with_one_delivery_id_across_retries(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/generic/{TOKEN}"
    url = receiver.plan(path, Reply(503))
    channel = notify.WebhookChannel(lambda: url, lambda: SIGNING_KEY)
    await deliver(notifier(channel), _rollback_notification())

    first, second = receiver.received(path)
    for post in (first, second):
        expected = hmac.new(SIGNING_KEY.encode(), post.body, hashlib.sha256).hexdigest()
        assert post.headers[notify.SIGNATURE_HEADER] == f"sha256={expected}"
    delivery = first.headers[notify.DELIVERY_HEADER]
    assert second.headers[notify.DELIVERY_HEADER] == delivery
    assert first.json() == notify.generic_payload(_rollback_notification(), delivery)
    secret_free(caplog, first.body)


@pytest.mark.asyncio
async def test_a_receiver_that_does_not_answer_in_time_is_tried_again(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/slow/{TOKEN}"
    url = receiver.plan(path, Reply(delay=2.0))
    sleeps = Sleeps()
    running = notifier(notify.SlackChannel(lambda: url), sleeps=sleeps, timeout=0.3)

    await deliver(running, _rollback_notification())

    assert len(receiver.received(path)) == 2
    assert running.stats["slack"].delivered == 1
    assert len(sleeps.waits) == 1
    assert "no answer within 0.3 s" in caplog.text
    secret_free(caplog)


@pytest.mark.parametrize(
    "reply",
    [Reply(404), Reply(400), Reply(302, {"Location": "/elsewhere"})],
    ids=["404", "400", "redirect"],
)
@pytest.mark.asyncio
async def test_a_refusal_is_final_and_a_redirect_is_not_followed(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, reply: Reply
) -> None:
    path = f"/refused/{reply.status}/{TOKEN}"
    url = receiver.plan(path, reply)
    sleeps = Sleeps()
    running = notifier(notify.SlackChannel(lambda: url), sleeps=sleeps)

    await deliver(running, _rollback_notification())

    assert len(receiver.received(path)) == 1
    assert receiver.received("/elsewhere") == []
    assert sleeps.waits == []
    assert (running.stats["slack"].failed, running.stats["slack"].delivered) == (1, 0)
    assert f"refused, not retried: HTTP {reply.status}" in caplog.text
    secret_free(caplog)


@pytest.mark.asyncio
async def test_it_gives_up_after_the_last_attempt(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/down/{TOKEN}"
    url = receiver.plan(path, *[Reply(502)] * 10)
    sleeps = Sleeps()
    running = notifier(notify.SlackChannel(lambda: url), sleeps=sleeps, attempts=3)

    await deliver(running, _rollback_notification())

    assert len(receiver.received(path)) == 3
    assert sleeps.waits == [notify.backoff_seconds(a, 1.0, 30.0, 0.5) for a in (1, 2)]
    assert running.stats["slack"].failed == 1
    assert "given up after 3 attempts: HTTP 502" in caplog.text
    secret_free(caplog)


@pytest.mark.asyncio
async def test_a_retry_after_beyond_the_longest_wait_gives_up_at_once(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/busy/{TOKEN}"
    url = receiver.plan(path, Reply(429, {"Retry-After": "3600"}))
    sleeps = Sleeps()
    running = notifier(notify.SlackChannel(lambda: url), sleeps=sleeps)

    await deliver(running, _rollback_notification())

    assert len(receiver.received(path)) == 1
    assert sleeps.waits == []
    assert running.stats["slack"].failed == 1
    assert "asks to wait 3600 s" in caplog.text


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.asyncio
async def test_a_refused_connection_is_retried_and_logged_without_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hooks/{TOKEN}"
    sleeps = Sleeps()
    running = notifier(notify.SlackChannel(lambda: url), sleeps=sleeps, attempts=2)

    await deliver(running, _rollback_notification())

    assert len(sleeps.waits) == 1
    assert running.stats["slack"].failed == 1
    assert "ClientConnectorError" in caplog.text
    secret_free(caplog)


@pytest.mark.asyncio
async def test_a_full_queue_drops_the_oldest_and_counts_it_without_blocking(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a queue of 2 and no worker yet, when five passes notify, then each call returns at
    once, the three oldest are dropped (logged, counted) and the two newest arrive in order."""
    path = f"/queue/{TOKEN}"
    url = receiver.plan(path)
    channel = notify.WebhookChannel(lambda: url)
    running = notifier(channel, queue_size=2)
    phases = [Phase.PROGRESSING, Phase.PAUSED, Phase.PROGRESSING, Phase.PROMOTING, Phase.SUCCEEDED]
    previous = Phase.SUCCEEDED
    for phase in phases:
        running.after_pass(
            "ml", "fraud", status(phase=previous, stable=V1), status(phase=phase, stable=V1), []
        )
        previous = phase

    assert running.stats["webhook"].dropped == 3
    assert caplog.text.count("is full (2): dropped the oldest") == 3
    await deliver(running)
    assert [p.json()["phase"] for p in receiver.received(path)] == ["Promoting", "Succeeded"]


@pytest.mark.asyncio
async def test_below_the_minimum_severity_nothing_is_queued(receiver: Receiver) -> None:
    path = f"/critical-only/{TOKEN}"
    url = receiver.plan(path)
    running = Notifier([notify.SlackChannel(lambda: url)], min_severity=Severity.CRITICAL)
    promoted = running.after_pass(
        "ml", "fraud", PROGRESSING, status(phase=Phase.PROMOTING, stable=V1, canary=V2), []
    )
    rollback = running.after_pass(
        "ml", "fraud", PROGRESSING, _rolling_back(Outcome.ROLLED_BACK, Reason.ANALYSIS_FAILED), []
    )
    assert promoted is None
    assert rollback is not None
    await deliver(running)
    assert [p.json()["text"] for p in receiver.received(path)] == [
        notify.slack_payload(rollback)["text"]
    ]


@pytest.mark.asyncio
async def test_a_secret_that_leaks_into_a_message_is_redacted_in_the_payload(
    receiver: Receiver,
) -> None:
    path = f"/leak/{TOKEN}"
    url = receiver.plan(path)
    leaky = _rollback_notification(f"cannot reach {url} (key {SIGNING_KEY})")
    await deliver(notifier(notify.WebhookChannel(lambda: url, lambda: SIGNING_KEY)), leaky)
    (post,) = receiver.received(path)
    assert post.json()["message"] == "cannot reach [redacted] (key [redacted])"


@pytest.mark.asyncio
async def test_secret_files_are_read_at_each_delivery(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rotated Secret (the kubelet rewrites the mounted file) applies to the next delivery;
    a missing file fails that notification with the error, not the URL."""
    old, new = f"/rotate/old/{TOKEN}", f"/rotate/new/{TOKEN}"
    file = tmp_path / "slack-url"
    file.write_text(receiver.plan(old) + "\n")
    running = notifier(notify.SlackChannel(notify.file_secret(file)))
    await running.start()
    try:
        running.submit(_rollback_notification())
        assert await running.drain(10)
        file.write_text(receiver.plan(new))
        running.submit(_rollback_notification())
        assert await running.drain(10)
        file.unlink()
        running.submit(_rollback_notification())
        assert await running.drain(10)
    finally:
        await running.stop(0)
    assert (len(receiver.received(old)), len(receiver.received(new))) == (1, 1)
    assert running.stats["slack"].failed == 1
    assert "cannot read its secret: No such file or directory" in caplog.text
    secret_free(caplog)


# --- Settings and wiring ----------------------------------------------------------------------


def test_settings_take_files_and_knobs_from_the_environment(tmp_path: Path) -> None:
    got = settings.from_env(
        {
            "MODELROLLOUT_NOTIFY_SLACK_URL_FILE": "/etc/n/slack-url",
            "MODELROLLOUT_NOTIFY_WEBHOOK_URL_FILE": "/etc/n/webhook-url",
            "MODELROLLOUT_NOTIFY_WEBHOOK_SIGNING_KEY_FILE": "/etc/n/key",
            "MODELROLLOUT_NOTIFY_MIN_SEVERITY": "warning",
            "MODELROLLOUT_NOTIFY_CLUSTER": "prod-eu",
            "MODELROLLOUT_NOTIFY_ATTEMPTS": "3",
            "MODELROLLOUT_NOTIFY_QUEUE_SIZE": "7",
            "MODELROLLOUT_NOTIFY_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert got.notify_slack_url_file == Path("/etc/n/slack-url")
    assert got.notify_webhook_url_file == Path("/etc/n/webhook-url")
    assert got.notify_webhook_signing_key_file == Path("/etc/n/key")
    assert (got.notify_min_severity, got.notify_cluster) == ("warning", "prod-eu")
    assert (got.notify_attempts, got.notify_queue_size, got.notify_timeout_seconds) == (3, 7, 2.5)
    assert wiring.notifier(settings.from_env({})) is None


def test_wiring_builds_the_channels_and_refuses_what_cannot_work(tmp_path: Path) -> None:
    slack, hook, key = (tmp_path / name for name in ("slack", "hook", "key"))
    for file in (slack, hook, key):
        file.write_text("x")
    both = settings.Settings(
        notify_slack_url_file=slack,
        notify_webhook_url_file=hook,
        notify_webhook_signing_key_file=key,
        notify_min_severity="WARNING",
    )
    built = wiring.notifier(both)
    assert built is not None
    assert sorted(built.stats) == ["slack", "webhook"]
    assert built.min_severity == Severity.WARNING
    with pytest.raises(ValueError, match="MODELROLLOUT_NOTIFY_SLACK_URL_FILE"):
        wiring.notifier(settings.Settings(notify_slack_url_file=tmp_path / "missing"))
    with pytest.raises(ValueError, match="WEBHOOK_URL_FILE is not"):
        wiring.notifier(settings.Settings(notify_webhook_signing_key_file=key))
    with pytest.raises(ValueError, match="use one of info, warning, critical"):
        wiring.notifier(settings.Settings(notify_slack_url_file=slack, notify_min_severity="loud"))


# --- The chart --------------------------------------------------------------------------------

CHART_VALUES: dict[str, Any] = {
    "notifications": {
        "enabled": True,
        "existingSecret": "rollout-notify",
        "keys": {"slackUrl": "slack", "webhookUrl": "hook", "webhookSigningSecret": "hmac"},
        "minSeverity": "warning",
        "cluster": "prod-eu",
        "attempts": 3,
    }
}


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    helm.disable_logging()
    return helm.Chart.load(REPO / "charts" / "modelrollout")


def _deployment(chart: helm.Chart, values: dict[str, Any]) -> dict[str, Any]:
    rendered = chart.render(values, name="modelrollout", namespace="ops")
    found: dict[str, Any] = yaml.safe_load(rendered["modelrollout/templates/deployment.yaml"])
    return found


def test_the_chart_mounts_the_secret_and_points_the_operator_at_its_files(
    chart: helm.Chart,
) -> None:
    deployment = _deployment(chart, CHART_VALUES)
    kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    literal = {name: e["value"] for name, e in env.items() if "value" in e}
    got = settings.from_env(literal)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "notify")
    assert mount == {"name": "notify", "mountPath": "/etc/modelrollout/notify", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "notify")
    assert volume["secret"]["secretName"] == "rollout-notify"
    files = {
        item["key"]: Path(mount["mountPath"], item["path"]) for item in volume["secret"]["items"]
    }
    assert got.notify_slack_url_file == files["slack"]
    assert got.notify_webhook_url_file == files["hook"]
    assert got.notify_webhook_signing_key_file == files["hmac"]
    assert (got.notify_min_severity, got.notify_cluster, got.notify_attempts) == (
        "warning",
        "prod-eu",
        3,
    )
    assert volume["secret"]["defaultMode"] == 0o440


def test_by_default_the_chart_sets_no_notification(chart: helm.Chart) -> None:
    deployment = _deployment(chart, {})
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert not [e for e in container["env"] if "NOTIFY" in e["name"]]
    assert all(v["name"] != "notify" for v in deployment["spec"]["template"]["spec"]["volumes"])


@pytest.mark.parametrize(
    ("values", "error", "says"),
    [
        (
            {"notifications": {"enabled": True, "slackUrl": "https://hooks.slack.com/x"}},
            helm.HelmValuesError,
            "slackUrl",
        ),
        ({"notifications": {"minSeverity": "loud"}}, helm.HelmValuesError, "minSeverity"),
        (
            {"notifications": {"enabled": True, "keys": {"slackUrl": "s"}}},
            helm.HelmRenderError,
            "needs notifications.existingSecret",
        ),
        (
            {"notifications": {"enabled": True, "existingSecret": "n"}},
            helm.HelmRenderError,
            "needs notifications.keys.slackUrl or notifications.keys.webhookUrl",
        ),
        (
            {
                "notifications": {
                    "enabled": True,
                    "existingSecret": "n",
                    "keys": {"slackUrl": "s", "webhookSigningSecret": "k"},
                }
            },
            helm.HelmRenderError,
            "webhookSigningSecret needs notifications.keys.webhookUrl",
        ),
    ],
    ids=["literal-url", "severity", "no-secret", "no-url", "key-without-webhook"],
)
def test_the_chart_refuses_a_literal_url_and_incomplete_settings(
    chart: helm.Chart, values: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as refused:
        chart.render(values, name="modelrollout", namespace="ops")
    assert says in str(refused.value)


# --- End to end -------------------------------------------------------------------------------

E2E_QUERY = "modelrollout_e2e_notify_success_rate"


def _e2e_rollout(namespace: str, version: int) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.ROLLOUT_KIND,
        "metadata": {"name": "scoring", "namespace": namespace},
        "spec": {
            "model": {"uri": f"models:/scoring/{version}"},
            "target": {
                "inferenceService": "scoring",
                "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
            },
            "strategy": {
                "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}],
                "analysis": {
                    "interval": "1s",
                    "metrics": [
                        {
                            "name": "success-rate",
                            "templateRef": {"name": "success-rate"},
                            "thresholdRange": {"min": 0.99},
                        }
                    ],
                },
            },
        },
    }


@pytest.mark.e2e
def test_a_promotion_and_a_rollback_each_notify_a_local_receiver(
    kube_api: KubeApiProcess,
    receiver: Receiver,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Given the operator with a Slack and a signed generic webhook (URLs and key in files),
    when v2 passes its analysis and v3 fails it, then both channels hear of the promotion
    (info) and of the rollback (critical, then warning once stable is back), every generic
    request is signed, and neither the operator's log nor a payload holds a secret (the
    URL token and the key are planted values: the session's scan looks for them too)."""
    ns = "e2e-notify"
    token, key = planted.NOTIFY_URL_TOKEN, planted.NOTIFY_SIGNING_KEY
    slack_path, hook_path = f"/e2e/slack/{token}", f"/e2e/hook/{token}"
    slack_url = planted.plant_file(tmp_path_factory, "slack-url", receiver.plan(slack_path))
    hook_url = planted.plant_file(tmp_path_factory, "hook-url", receiver.plan(hook_path))
    signing_key = planted.plant_file(tmp_path_factory, "signing-key", key)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({E2E_QUERY: 0.999}))
    kubectl = Kubectl(kube_api.kubeconfig)
    the_operator = operator(
        tmp_path,
        kube_api.kubeconfig,
        MODELROLLOUT_METRICS=f"static:{metrics}",
        MODELROLLOUT_NAMESPACES=ns,
        MODELROLLOUT_NOTIFY_SLACK_URL_FILE=str(slack_url),
        MODELROLLOUT_NOTIFY_WEBHOOK_URL_FILE=str(hook_url),
        MODELROLLOUT_NOTIFY_WEBHOOK_SIGNING_KEY_FILE=str(signing_key),
        MODELROLLOUT_NOTIFY_CLUSTER="e2e",
    )
    template = {
        "apiVersion": api.API_VERSION,
        "kind": api.TEMPLATE_KIND,
        "metadata": {"name": "success-rate", "namespace": ns},
        "spec": {"provider": {"prometheus": {"address": "http://127.0.0.1:9"}}, "query": E2E_QUERY},
    }

    def phase() -> str:
        found: str = kubectl.json("get", "mro", "scoring", "-n", ns).get("status", {}).get("phase")
        return found

    def heard(phase: str, version: str) -> bool:
        return any(
            p.json()["phase"] == phase and (p.json().get("canary") or {}).get("version") == version
            for p in receiver.received(hook_path)
        )

    with running(kubectl, kserve_controller(tmp_path, kube_api.kubeconfig), the_operator):
        kubectl("create", "namespace", ns)
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump(template))
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump(_e2e_rollout(ns, 1)))
        wait_for("v1 stable", lambda: phase() == "Succeeded")
        # When v2 measures well, then it is promoted.
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump(_e2e_rollout(ns, 2)))
        wait_for("v2 promoted and heard of", lambda: heard("Succeeded", "2"), timeout=90)
        # When v3 measures badly, then it is rolled back.
        metrics.write_text(json.dumps({E2E_QUERY: 0.5}))
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump(_e2e_rollout(ns, 3)))
        wait_for("v3 rolled back and heard of", lambda: heard("Failed", "3"), timeout=90)

    generic = [p.json() for p in receiver.received(hook_path)]
    said = [
        (
            g["previousPhase"],
            g["phase"],
            g["severity"],
            g["reason"],
            (g["canary"] or {}).get("version"),
        )
        for g in generic
    ]
    promoted = said.index(("Promoting", "Succeeded", "info", "RolloutPromoted", "2"))
    started = said.index(("Succeeded", "Progressing", "info", "RolloutStarted", "3"))
    rolling_back = said.index(("Progressing", "RollingBack", "critical", "AnalysisFailed", "3"))
    failed = said.index(("RollingBack", "Failed", "warning", "RolledBack", "3"))
    assert promoted < started < rolling_back < failed, said
    assert said[0][:2] == ("Pending", "Initializing")
    assert all(g["rollout"] == {"namespace": ns, "name": "scoring"} for g in generic)
    assert all(g["cluster"] == "e2e" for g in generic)
    assert generic[failed]["stable"]["version"] == "2"
    for post in receiver.received(hook_path):
        expected = hmac.new(key.encode(), post.body, hashlib.sha256).hexdigest()
        assert post.headers[notify.SIGNATURE_HEADER] == f"sha256={expected}"
    slack = [p.json()["text"] for p in receiver.received(slack_path)]
    assert len(slack) == len(generic)
    assert slack[rolling_back].startswith(":rotating_light: e2e *e2e-notify/scoring*")
    log = the_operator.log.read_text()
    assert "AnalysisFailed" in log
    for text in (log, *(p.body.decode() for p in receiver.received(slack_path))):
        assert token not in text
        assert key not in text
