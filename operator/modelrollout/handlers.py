"""kopf registration: the only module with kopf decorators. Thin on purpose.

Every handler reads the object, asks the engine for one pass, and writes the status patch
and the events once. A change (create, update, resume) runs a pass at once, and kopf writes
its status. Between changes, one daemon per rollout sleeps until the core says the rollout is
next due (``requeue_after``: a pause's end, the next analysis, a convergence check, the git
source's next poll), and at most ``MODELROLLOUT_RESYNC_SECONDS``, then runs the pass and
writes its status itself: kopf sends a daemon's patch only when the daemon returns. A pass
from a change re-arms the daemon with the due time it produced. Passes of one rollout never
overlap. A rollout with nothing due (settled) runs a pass every resync period, to see
registry alias moves and changes of what is not watched (MetricTemplates, Secrets). A pass
that failed runs again after ``MODELROLLOUT_TIMER_SECONDS``.

The operator also watches InferenceServices: when KServe reports on one, the rollouts that
route through it are due at once, so a rollout waiting for the router to converge moves as
soon as it has (the core's convergence poll is a slow fallback).

A fixed-period timer instead would wake every rollout every period whether or not anything
is due, and a rollout would move up to one period late (``bench/scale.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import kopf

from modelrollout import api, engine, serde, wiring
from modelrollout.errors import ModelRolloutError
from modelrollout.kube.events import Involved, event_name
from modelrollout.routing import kserve
from modelrollout.settings import from_env
from modelrollout.telemetry import Telemetry

log = logging.getLogger(__name__)

SETTINGS = from_env()
FINALIZER = f"{api.GROUP}/finalizer"
_RESOURCE = (api.GROUP, api.VERSION, api.ROLLOUT_PLURAL)
_INFERENCE_SERVICES = (kserve.GROUP, kserve.VERSION, kserve.PLURAL)
#: asyncio may run a timer up to its clock resolution early; a pass woken a hair before a
#: pause ends would find it not over yet and ask for another pass at once.
_LATE_BY = 0.005


@dataclass
class Schedule:
    """When a rollout's next pass is due (event-loop time), and a way to say it changed."""

    due: float
    rearmed: asyncio.Event = field(default_factory=asyncio.Event)
    #: When the rollout's InferenceService last woke it (event-loop time).
    woken: float = float("-inf")

    def set(self, due: float) -> None:
        self.due = due
        self.rearmed.set()


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
    # kopf's default waits 5 minutes for an answer to a status patch or an event.
    settings.networking.request_timeout = SETTINGS.kube_request_timeout_seconds
    asyncio.get_running_loop().set_default_executor(wiring.api_threads(SETTINGS))
    memo.telemetry = Telemetry()
    memo.telemetry_server = wiring.telemetry_server(SETTINGS, memo.telemetry)
    if memo.telemetry_server is not None:
        await memo.telemetry_server.start()
    git = wiring.git_source(SETTINGS)
    memo.watched = wiring.watched_inference_services(SETTINGS)
    memo.ports = wiring.instrumented(wiring.ports(SETTINGS, git), memo.telemetry)
    memo.status_writer = wiring.status_writer(SETTINGS)
    memo.events = wiring.events(SETTINGS)
    memo.webhook = wiring.webhook(SETTINGS, git)
    if memo.webhook is not None:
        await memo.webhook.start()
    memo.notifier = wiring.notifier(SETTINGS)
    if memo.notifier is not None:
        await memo.notifier.start()
    memo.locks = {}
    memo.statuses = {}
    memo.schedules = {}
    memo.targets = {}
    memo.targeting = {}
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


def _schedule(memo: kopf.Memo, uid: str) -> Schedule:
    schedule: Schedule | None = memo.schedules.get(uid)
    if schedule is None:
        schedule = Schedule(asyncio.get_running_loop().time() + SETTINGS.timer_seconds)
        memo.schedules[uid] = schedule
    return schedule


def _rearm(memo: kopf.Memo, uid: str, after: float | None, since: float) -> None:
    """The next pass of ``uid`` ``after`` seconds (at most the resync period; None: nothing
    due, the resync period) from ``since``: the event-loop time at which the pass that said
    so read the clock."""
    wait = SETTINGS.resync_seconds if after is None else min(after, SETTINGS.resync_seconds)
    schedule = _schedule(memo, uid)
    due = since + max(0.0, wait) + _LATE_BY
    if schedule.woken >= since:
        # The InferenceService changed while the pass ran (KServe answering the pass's own
        # patch, typically): the pass may not have seen it.
        due = min(due, schedule.woken)
    schedule.set(due)


def _target(memo: kopf.Memo, uid: str, namespace: str, spec: Mapping[str, Any]) -> None:
    """Remember which InferenceService ``uid`` routes through, for :func:`wake_on_route`."""
    target = spec.get("target")
    name = target.get("inferenceService") if isinstance(target, Mapping) else None
    key = (namespace, name) if isinstance(name, str) else None
    before = memo.targeting.get(uid)
    if before == key:
        return
    _untarget(memo, uid)
    if key is not None:
        memo.targeting[uid] = key
        memo.targets.setdefault(key, set()).add(uid)


def _untarget(memo: kopf.Memo, uid: str) -> None:
    key = memo.targeting.pop(uid, None)
    uids = memo.targets.get(key) if key is not None else None
    if uids is not None:
        uids.discard(uid)
        if not uids:
            del memo.targets[key]


def _wake(memo: kopf.Memo, namespace: str, name: str, now: float) -> int:
    """Make the rollouts routing through ``namespace/name`` due at ``now``; how many."""
    woken = 0
    for uid in memo.targets.get((namespace, name), ()):
        schedule: Schedule | None = memo.schedules.get(uid)
        if schedule is not None:
            schedule.woken = now
            if schedule.due > now:
                schedule.set(now)
                woken += 1
    return woken


async def _pass(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    memo: kopf.Memo,
) -> dict[str, Any]:
    """One pass; posts its events and returns the status merge patch to write."""
    uid = meta.get("uid", "")
    async with memo.locks.setdefault(uid, asyncio.Lock()):
        # Passes of one rollout run one at a time, each from the status the
        # previous one produced: kopf hands a handler the body as it was when
        # the handler was queued, which may predate the last pass's write.
        given = _rollout(body, spec, status, meta)
        _target(memo, uid, given.namespace, given.spec)
        last = memo.statuses.get(uid, given.status)
        # The core's due times count from its clock reading at the start of the pass.
        begun = asyncio.get_running_loop().time()
        started = time.perf_counter()
        try:
            result = await engine.reconcile(replace(given, status=last), memo.ports)
        except engine.ActionError:
            memo.telemetry.record_error(
                given.namespace, given.name, "action", time.perf_counter() - started
            )
            _rearm(memo, uid, SETTINGS.timer_seconds, begun)
            raise
        except Exception:
            memo.telemetry.record_error(
                given.namespace, given.name, "unexpected", time.perf_counter() - started
            )
            _rearm(memo, uid, SETTINGS.timer_seconds, begun)
            raise
        before, after = result.typed or (last, result.status)
        memo.telemetry.record_pass(
            given.namespace, given.name, before, after, time.perf_counter() - started
        )
        memo.statuses[uid] = result.status
        _rearm(memo, uid, result.requeue_after, begun)
        if memo.get("notifier") is not None:
            # Queued (never sent) here, inside the lock: a rollout's notifications keep the
            # order of its passes, and no pass waits for a receiver.
            memo.notifier.after_pass(
                given.namespace, given.name, last, result.status, result.events
            )
    # Named after where the rollout stood when the pass started and what the event says: a
    # pass run again after its status write was lost (the operator killed in between, or
    # the write refused) names its events the same, and posts none twice.
    origin = _origin(last, given.generation)
    posts = [
        _post(
            memo, meta, origin, event.message, event.type.value, event.reason.value, event.message
        )
        for event in result.events
    ]
    await asyncio.gather(*posts)
    return serde.merge_patch_from([given.status, last], result.status)


@kopf.on.create(*_RESOURCE)
@kopf.on.update(*_RESOURCE)
@kopf.on.resume(*_RESOURCE)
async def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Every change and every resume run a pass at once; kopf writes its status."""
    try:
        status_patch = await _pass(body, spec, status, meta, memo)
    except engine.ActionError as error:
        origin = _origin(memo.statuses.get(meta.get("uid", "")) or {}, None)
        await _post(memo, meta, origin, str(error), "Warning", error.reason, str(error))
        raise kopf.TemporaryError(str(error), delay=SETTINGS.timer_seconds) from error
    if status_patch:
        patch.setdefault("status", {}).update(status_patch)


@kopf.daemon(*_RESOURCE, cancellation_backoff=5.0, cancellation_timeout=30.0)
async def drive(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """The passes between changes, each when the previous pass said the rollout is due."""
    uid = meta.get("uid", "")
    loop = asyncio.get_running_loop()
    stopping = asyncio.ensure_future(_until(stopped))
    try:
        while not stopped:
            schedule = _schedule(memo, uid)
            schedule.rearmed.clear()
            wait = schedule.due - loop.time()
            if wait > 0:
                rearmed = asyncio.ensure_future(schedule.rearmed.wait())
                await asyncio.wait(
                    (stopping, rearmed), timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                rearmed.cancel()
                continue
            try:
                status_patch = await _pass(body, spec, status, meta, memo)
                if status_patch:
                    await memo.status_writer.patch(
                        meta.namespace or "", meta.name or "", status_patch
                    )
            except engine.ActionError as error:
                # kopf posts no event for a daemon's log lines: an action that failed is
                # posted here, once for as long as the same failure repeats from one status.
                origin = _origin(memo.statuses.get(uid) or {}, None)
                await _post(memo, meta, origin, str(error), "Warning", error.reason, str(error))
            except ModelRolloutError as error:
                # A status write the API server did not take: sent again by the next pass,
                # in MODELROLLOUT_TIMER_SECONDS at the latest.
                logger.warning(f"pass failed temporarily: {error}")
                if _schedule(memo, uid).due > loop.time() + SETTINGS.timer_seconds:
                    _rearm(memo, uid, SETTINGS.timer_seconds, loop.time())
            except Exception:
                logger.exception("pass failed; retrying")
                _rearm(memo, uid, SETTINGS.timer_seconds, loop.time())
    finally:
        stopping.cancel()


def _origin(status: dict[str, Any], generation: int | None) -> dict[str, Any]:
    """Where a rollout stands: its phase, step, split, models and how many outcomes it has
    recorded (not its conditions or analysis, which passes in between rewrite)."""
    where = {key: status.get(key) for key in _WHERE}
    return {**where, "history": len(status.get("history") or ()), "generation": generation}


_WHERE = ("phase", "currentStepIndex", "canaryWeight", "stable", "canary", "failedVersions")


async def _post(
    memo: kopf.Memo,
    meta: kopf.Meta,
    origin: dict[str, Any],
    place: object,
    kind: str,
    reason: str,
    message: str,
) -> None:
    involved = Involved(meta.namespace or "", meta.name or "", meta.get("uid", ""))
    name = event_name(involved, origin, place, reason)
    await memo.events.post(involved, name, kind, reason, message)
    log.log(
        logging.WARNING if kind == "Warning" else logging.INFO,
        "[%s/%s] %s: %s", involved.namespace, involved.name, reason, message,
    )  # fmt: skip


async def _until(stopped: kopf.DaemonStopped) -> None:
    await stopped.wait()


@kopf.on.event(*_INFERENCE_SERVICES)
async def wake_on_route(
    event: kopf.RawEvent, namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """A rollout waiting for its InferenceService runs its pass as soon as KServe reports.

    What the watch delivered is held (``memo.watched``), so that only news wakes anyone: a
    watch that lists again delivers every InferenceService again. A pass that changed one,
    or found it not converged yet, asks to be run again in ``CONVERGE_POLL_SECONDS``
    (machine.py); this watch wakes it when the change lands instead, and the poll is left as
    a slow fallback for a lost watch event. A spec whose status has not caught up
    (``observedGeneration`` behind ``generation``: the echo of the operator's own patch)
    cannot show the route converged, and wakes nobody: KServe's status update follows. A
    removed InferenceService and a hand edit KServe has reconciled wake the rollout, which
    puts the route back.
    """
    obj = event.get("object")
    if not isinstance(obj, Mapping) or memo.get("targets") is None:
        return
    if event.get("type") == "DELETED":
        memo.watched.gone(namespace or "", name or "", obj)
    elif not memo.watched.seen(obj) or not kserve.reconciled(obj):
        # Nothing new (a watch that lists again, or the answer to the operator's own write
        # delivered again), or nothing that can show the route converged.
        return
    _wake(memo, namespace or "", name or "", asyncio.get_running_loop().time())


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
    uid = meta.get("uid", "")
    memo.statuses.pop(uid, None)
    memo.locks.pop(uid, None)
    memo.schedules.pop(uid, None)
    _untarget(memo, uid)
    memo.telemetry.forget(meta.namespace or "", meta.name or "")
