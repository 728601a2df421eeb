"""kopf registration: the only module with kopf decorators. Thin on purpose.

Every handler reads the object, asks the engine for one pass, and writes the
status patch and the events once. The driving timer wakes each rollout every
``MODELROLLOUT_TIMER_SECONDS``; kopf timers have one interval per decorator,
so each rollout's own intervals are enforced by the core from its status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import kopf

from modelrollout import api, engine, serde, wiring
from modelrollout.decision import EventType
from modelrollout.settings import from_env
from modelrollout.telemetry import Telemetry

log = logging.getLogger(__name__)

SETTINGS = from_env()
FINALIZER = f"{api.GROUP}/finalizer"
_RESOURCE = (api.GROUP, api.VERSION, api.ROLLOUT_PLURAL)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # The status schema is strict: kopf's own records live in our annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # Our events are posted explicitly with reason constants; of kopf's own
    # log lines only warnings and errors become events.
    settings.posting.level = logging.WARNING
    settings.peering.standalone = SETTINGS.peering is None
    memo.telemetry = Telemetry()
    memo.telemetry_server = wiring.telemetry_server(SETTINGS, memo.telemetry)
    if memo.telemetry_server is not None:
        await memo.telemetry_server.start()
    git = wiring.git_source(SETTINGS)
    memo.ports = wiring.instrumented(wiring.ports(SETTINGS, git), memo.telemetry)
    memo.webhook = wiring.webhook(SETTINGS, git)
    if memo.webhook is not None:
        await memo.webhook.start()
    memo.notifier = wiring.notifier(SETTINGS)
    if memo.notifier is not None:
        await memo.notifier.start()
    memo.locks = {}
    memo.statuses = {}
    if memo.telemetry_server is not None:
        memo.telemetry_server.health.started = True


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("notifier") is not None:
        await memo.notifier.stop()
    if memo.get("webhook") is not None:
        await memo.webhook.stop()
    if memo.get("telemetry_server") is not None:
        await memo.telemetry_server.stop()


def _rollout(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta
) -> engine.Rollout:
    return engine.Rollout(
        namespace=meta.namespace or "",
        name=meta.name or "",
        spec=dict(spec),
        status=dict(status),
        annotations=dict(meta.annotations),
        generation=meta.get("generation"),
    )


async def _pass(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
) -> None:
    uid = meta.get("uid", "")
    async with memo.locks.setdefault(uid, asyncio.Lock()):
        # Passes of one rollout run one at a time, each from the status the
        # previous one produced: kopf hands a handler the body as it was when
        # the handler was queued, which may predate the last pass's write.
        given = _rollout(body, spec, status, meta)
        last = memo.statuses.get(uid, given.status)
        started = time.perf_counter()
        try:
            result = await engine.reconcile(replace(given, status=last), memo.ports)
        except engine.ActionError as error:
            memo.telemetry.record_error(
                given.namespace, given.name, "action", time.perf_counter() - started
            )
            raise kopf.TemporaryError(str(error), delay=SETTINGS.timer_seconds) from error
        except Exception:
            memo.telemetry.record_error(
                given.namespace, given.name, "unexpected", time.perf_counter() - started
            )
            raise
        memo.telemetry.record_pass(
            given.namespace, given.name, last, result.status, time.perf_counter() - started
        )
        memo.statuses[uid] = result.status
        if memo.get("notifier") is not None:
            # Queued (never sent) here, inside the lock: a rollout's notifications keep the
            # order of its passes, and no pass waits for a receiver.
            memo.notifier.after_pass(
                given.namespace, given.name, last, result.status, result.events
            )
    status_patch = serde.merge_patch_from([given.status, last], result.status)
    if status_patch:
        patch.setdefault("status", {}).update(status_patch)
    for event in result.events:
        kind = "Warning" if event.type == EventType.WARNING else "Normal"
        kopf.event(body, type=kind, reason=event.reason.value, message=event.message)
        log.log(
            logging.WARNING if kind == "Warning" else logging.INFO,
            "[%s/%s] %s: %s", meta.get("namespace"), meta.get("name"), event.reason.value,
            event.message,
        )  # fmt: skip


@kopf.on.create(*_RESOURCE)
@kopf.on.update(*_RESOURCE)
@kopf.on.resume(*_RESOURCE)
@kopf.timer(*_RESOURCE, interval=SETTINGS.timer_seconds, idle=None)
async def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Every change, every resume and every timer tick run the same pass."""
    await _pass(body, spec, status, meta, patch, memo)


@kopf.on.delete(*_RESOURCE)
async def release(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    waiting = await engine.release(_rollout(body, spec, status, meta), memo.ports)
    if waiting is not None:
        raise kopf.TemporaryError(waiting, delay=SETTINGS.timer_seconds)
    memo.statuses.pop(meta.get("uid", ""), None)
    memo.locks.pop(meta.get("uid", ""), None)
    memo.telemetry.forget(meta.namespace or "", meta.name or "")
