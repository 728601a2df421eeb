"""The routers read InferenceServices from what the operator's watch delivered, not a GET.

routing.kserve.WatchedInferenceServices holds each InferenceService as the watch, or the
operator's own read or write, last answered it: a newer resourceVersion replaces an older
one, never the other way round; a deletion older than what is held is ignored; an entry the
watch has not refreshed for ``max_age`` seconds is not used, so a change the watch missed is
still read from the server. A router given the store sends a GET only for what it does not
hold, and forgets an InferenceService the server answers 404 for.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelrollout.decision import RouteObservation
from modelrollout.routing import kserve, kserve_serverless
from test_routing_kserve import TARGET, C, FakeKube, S


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def isvc(version: str, weight: int = 0, name: str = "fraud") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": name, "resourceVersion": version},
        "spec": {"predictor": {"canaryTrafficPercent": weight}},
    }


def test_a_newer_object_replaces_an_older_one_never_the_reverse() -> None:
    """Given v12 held, when the watch delivers v11 late, then v12 stays; v13 replaces it."""
    watched = kserve.WatchedInferenceServices(max_age=60, clock=Clock())
    watched.seen(isvc("12", 20))
    watched.seen(isvc("11", 10))
    assert watched.get("shop", "fraud") == isvc("12", 20)
    watched.seen(isvc("13", 50))
    assert watched.get("shop", "fraud") == isvc("13", 50)
    assert watched.get("shop", "other") is None


def test_only_a_version_not_held_yet_is_news() -> None:
    """A watch that lists again delivers what it delivered: not news, so nobody is woken."""
    watched = kserve.WatchedInferenceServices(max_age=60, clock=Clock())
    assert watched.seen(isvc("12", 20))
    assert not watched.seen(isvc("12", 20))
    assert not watched.seen(isvc("11", 10))
    assert watched.seen(isvc("13", 50))


def test_resource_versions_compare_as_numbers() -> None:
    watched = kserve.WatchedInferenceServices(max_age=60, clock=Clock())
    watched.seen(isvc("9", 20))
    watched.seen(isvc("10", 50))
    assert watched.get("shop", "fraud") == isvc("10", 50)


def test_without_comparable_versions_the_later_arrival_wins() -> None:
    watched = kserve.WatchedInferenceServices(max_age=60, clock=Clock())
    watched.seen(isvc("b", 20))
    watched.seen(isvc("a", 50))
    assert watched.get("shop", "fraud") == isvc("a", 50)


def test_a_deletion_older_than_what_is_held_is_ignored() -> None:
    """Deleted at v5, then created again (v7, the operator's create answered first): the
    late DELETED event of v5 does not drop v7; a deletion at v8 does."""
    watched = kserve.WatchedInferenceServices(max_age=60, clock=Clock())
    watched.seen(isvc("7"))
    watched.gone("shop", "fraud", isvc("5"))
    assert watched.get("shop", "fraud") == isvc("7")
    watched.gone("shop", "fraud", isvc("8"))
    assert watched.get("shop", "fraud") is None
    assert len(watched) == 0


def test_an_entry_the_watch_has_not_refreshed_for_max_age_is_not_used() -> None:
    clock = Clock()
    watched = kserve.WatchedInferenceServices(max_age=30, clock=clock)
    watched.seen(isvc("3"))
    clock.now += 30
    assert watched.get("shop", "fraud") == isvc("3")
    clock.now += 0.5
    assert watched.get("shop", "fraud") is None
    watched.seen(isvc("3"))
    assert watched.get("shop", "fraud") == isvc("3")


def gets(kube: FakeKube) -> int:
    return sum(1 for method, *_ in kube.requests if method == "GET")


@pytest.mark.asyncio
async def test_a_router_with_the_store_reads_what_it_holds_without_a_get() -> None:
    """Given a router whose store is empty, when it creates the InferenceService (one GET:
    404), then observing it and changing its weight send no GET: the create's and the
    patch's answers are held."""
    kube, clock = FakeKube(), Clock()
    watched = kserve.WatchedInferenceServices(max_age=30, clock=clock)
    router = kserve_serverless.ServerlessRouter(kube, watched=watched)
    await router.set_weight(TARGET, S, C, 10)
    assert [r[0] for r in kube.requests] == ["GET", "POST"]
    await router.set_weight(TARGET, S, C, 10)
    assert [r[0] for r in kube.requests] == ["GET", "POST", "PATCH"]
    observed = await router.observe(TARGET)
    assert observed == RouteObservation(S.storage_uri, C.storage_uri, 0, False)
    assert gets(kube) == 1
    assert watched.get("shop", "fraud") == kube.objects[("shop", "fraud")]


@pytest.mark.asyncio
async def test_a_router_reads_the_server_once_its_entry_is_stale() -> None:
    kube, clock = FakeKube(), Clock()
    watched = kserve.WatchedInferenceServices(max_age=30, clock=clock)
    router = kserve_serverless.ServerlessRouter(kube, watched=watched)
    await router.promote(TARGET, S)
    clock.now += 31
    await router.observe(TARGET)
    assert gets(kube) == 2


@pytest.mark.asyncio
async def test_a_404_on_a_patch_forgets_the_inference_service() -> None:
    """Held, but deleted behind the watch's back: the patch is answered 404, the pass fails,
    and the next read asks the server (which says it is gone)."""
    kube, clock = FakeKube(), Clock()
    watched = kserve.WatchedInferenceServices(max_age=30, clock=clock)
    router = kserve_serverless.ServerlessRouter(kube, watched=watched)
    await router.promote(TARGET, S)
    del kube.objects[("shop", "fraud")]
    with pytest.raises(Exception, match="404"):
        await router.set_weight(TARGET, S, C, 10)
    assert watched.get("shop", "fraud") is None
    assert await router.observe(TARGET) is None
