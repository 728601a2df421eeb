"""A rollout waiting for its InferenceService runs as soon as KServe reports (handlers.py).

The operator watches InferenceServices; an event for one that KServe has reconciled (its
``status.observedGeneration`` caught up with ``metadata.generation``), or its deletion, makes
every rollout routing through it due at once. The echo of a spec patch KServe has not
reconciled yet wakes nobody. Every event is held for the routers to read first. A wake that
lands while the rollout's pass runs is kept when that pass re-arms the rollout for later.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from modelrollout import handlers
from modelrollout.routing import kserve

LATE_BY = handlers._LATE_BY


def memo() -> kopf.Memo:
    found = kopf.Memo()
    found.schedules = {}
    found.targets = {}
    found.targeting = {}
    found.watched = kserve.WatchedInferenceServices(max_age=60)
    return found


def isvc(name: str, generation: int, observed: int | None) -> dict[str, Any]:
    status = {} if observed is None else {"observedGeneration": observed}
    return {
        "metadata": {"namespace": "ns", "name": name, "generation": generation},
        "status": status,
    }


def spec(target: str) -> dict[str, Any]:
    return {"target": {"inferenceService": target}}


async def event(found: kopf.Memo, kind: str, obj: dict[str, Any]) -> None:
    raw: Any = {"type": kind, "object": obj}
    await handlers.wake_on_route(
        event=raw, namespace=obj["metadata"]["namespace"], name=obj["metadata"]["name"],
        memo=found,
    )  # fmt: skip


def armed(found: kopf.Memo, uid: str, due: float) -> handlers.Schedule:
    schedule = handlers.Schedule(due)
    found.schedules[uid] = schedule
    return schedule


@pytest.mark.asyncio
async def test_a_reconciled_inference_service_makes_its_rollouts_due_now() -> None:
    """Given two rollouts on "svc" and one on "other", all due in an hour, when KServe
    reports "svc" reconciled, then both rollouts on "svc" are due now and woken."""
    found = memo()
    now = asyncio.get_running_loop().time()
    for uid, target in (("a", "svc"), ("b", "svc"), ("c", "other")):
        handlers._target(found, uid, "ns", spec(target))
        armed(found, uid, now + 3600)
    await event(found, "MODIFIED", isvc("svc", 3, 3))
    assert found.schedules["a"].due <= asyncio.get_running_loop().time()
    assert found.schedules["b"].due <= asyncio.get_running_loop().time()
    assert found.schedules["a"].rearmed.is_set()
    assert found.schedules["c"].due == now + 3600
    assert not found.schedules["c"].rearmed.is_set()


@pytest.mark.asyncio
async def test_a_spec_kserve_has_not_reconciled_wakes_nobody() -> None:
    found = memo()
    now = asyncio.get_running_loop().time()
    handlers._target(found, "a", "ns", spec("svc"))
    armed(found, "a", now + 3600)
    await event(found, "MODIFIED", isvc("svc", 4, 3))
    await event(found, "ADDED", isvc("svc", 1, None))
    assert found.schedules["a"].due == now + 3600
    assert not found.schedules["a"].rearmed.is_set()


@pytest.mark.asyncio
async def test_every_event_is_held_for_the_routers_before_anyone_wakes() -> None:
    found = memo()
    await event(found, "ADDED", isvc("svc", 1, None))
    assert found.watched.get("ns", "svc") == isvc("svc", 1, None)
    await event(found, "MODIFIED", isvc("svc", 1, 1))
    assert found.watched.get("ns", "svc") == isvc("svc", 1, 1)
    await event(found, "DELETED", isvc("svc", 1, 1))
    assert found.watched.get("ns", "svc") is None


@pytest.mark.asyncio
async def test_a_version_delivered_again_wakes_nobody() -> None:
    """A watch that lists again (after 410 Gone) delivers every InferenceService again: the
    versions already held wake nobody, or every rollout would run at once."""
    found = memo()
    handlers._target(found, "a", "ns", spec("svc"))
    listed = {
        **isvc("svc", 3, 3),
        "metadata": {**isvc("svc", 3, 3)["metadata"], "resourceVersion": "7"},
    }
    await event(found, "MODIFIED", listed)
    now = asyncio.get_running_loop().time()
    armed(found, "a", now + 3600)
    await event(found, "MODIFIED", listed)
    assert found.schedules["a"].due == now + 3600


@pytest.mark.asyncio
async def test_a_deleted_inference_service_wakes_its_rollouts() -> None:
    found = memo()
    now = asyncio.get_running_loop().time()
    handlers._target(found, "a", "ns", spec("svc"))
    armed(found, "a", now + 3600)
    await event(found, "DELETED", isvc("svc", 4, 3))
    assert found.schedules["a"].due <= asyncio.get_running_loop().time()


@pytest.mark.asyncio
async def test_a_rollout_moved_to_another_inference_service_follows_it() -> None:
    found = memo()
    now = asyncio.get_running_loop().time()
    handlers._target(found, "a", "ns", spec("old"))
    handlers._target(found, "a", "ns", spec("new"))
    armed(found, "a", now + 3600)
    await event(found, "MODIFIED", isvc("old", 2, 2))
    assert found.schedules["a"].due == now + 3600
    await event(found, "MODIFIED", isvc("new", 2, 2))
    assert found.schedules["a"].due <= asyncio.get_running_loop().time()
    assert found.targets == {("ns", "new"): {"a"}}


@pytest.mark.asyncio
async def test_a_deleted_rollout_is_forgotten() -> None:
    found = memo()
    handlers._target(found, "a", "ns", spec("svc"))
    handlers._untarget(found, "a")
    assert found.targets == {}
    assert found.targeting == {}


@pytest.mark.asyncio
async def test_a_wake_during_a_pass_survives_the_pass_re_arming_for_later() -> None:
    """Given a pass that read the clock at 100 and will ask for 10 s, when KServe reports at
    100.2 (before the pass ends), then the rollout stays due at 100.2, not 110."""
    found = memo()
    handlers._target(found, "a", "ns", spec("svc"))
    schedule = armed(found, "a", 100.0)
    handlers._wake(found, "ns", "svc", now=100.2)
    handlers._rearm(found, "a", 10.0, since=100.0)
    assert schedule.due == pytest.approx(100.2)


@pytest.mark.asyncio
async def test_a_wake_before_the_pass_began_does_not_shorten_its_wait() -> None:
    """The pass that began after the wake has seen what woke it."""
    found = memo()
    handlers._target(found, "a", "ns", spec("svc"))
    armed(found, "a", 100.0)
    handlers._wake(found, "ns", "svc", now=99.0)
    handlers._rearm(found, "a", 1.0, since=100.0)
    assert found.schedules["a"].due == pytest.approx(101.0 + LATE_BY)
