"""The local KServe controller's pure mapping: spec + last status -> the status KServe writes.

Covers, step by step from one InferenceService's history (each step applies the spec change,
then reconciles as the controller would): serverless first create, canary at 10%, canary at
0%, promotion, rollback to a new revision of the stable model (in the router's two calls and
in one), a latest revision that is not ready (traffic stays, Ready False with its reason),
KServe's own rollback after a canary reached 100%; raw mode canaries (Deployments named after
them), a canary not ready, promotion by naming the predictor after the canary (no restart)
and by changing its model (a rolling update); the bookkeeping in ``status.annotations`` (a
fresh start carries on the revision counter and the storage URIs); which revisions are
retired; that reconciling again changes nothing and condition times only move when a status
flips; and that the routers read each status back as the split the spec asked for. Every
status is valid for both CRDs.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from kserve_crds import assert_valid
from modelrollout.api import ModelVersionRef
from modelrollout.decision import RouteObservation
from modelrollout.routing import kserve_raw, kserve_serverless
from modelrollout.sandbox.kserve import revisions
from modelrollout.sandbox.kserve.revisions import COUNTER, REVISIONS
from modelrollout.serde import apply_merge_patch, merge_patch

S, C = "s3://models/fraud/1", "s3://models/fraud/2"
R1, R2, R3, R4 = (f"fraud-predictor-0000{i}" for i in range(1, 5))
T0, T1 = "2026-01-05T10:00:00Z", "2026-01-05T10:05:00Z"
PREDICTOR = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": S}, "minReplicas": 1}


def created(*, raw: bool = False) -> dict[str, Any]:
    annotations = {"serving.kserve.io/deploymentMode": "RawDeployment"} if raw else {}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "fraud",
            "namespace": "shop",
            "generation": 1,
            "annotations": {"modelrollout.io/stable-storage-uri": S, **annotations},
        },
        "spec": {"predictor": copy.deepcopy(PREDICTOR)},
    }


@dataclass
class World:
    """One InferenceService, changed by merge patches and reconciled with a set of revisions
    held back (not ready)."""

    obj: dict[str, Any]
    not_ready: set[str] = field(default_factory=set)
    now: str = T0
    last: revisions.Reconciled | None = None

    def change(self, patch: dict[str, Any]) -> World:
        after = apply_merge_patch(self.obj, patch)
        if after["spec"] != self.obj["spec"]:
            after["metadata"]["generation"] += 1
        self.obj = after
        return self.reconcile()

    def reconcile(self) -> World:
        book = revisions.plan(self.obj)
        ready = {r.name: r.name not in self.not_ready for r in book.revisions.values()}
        self.last = revisions.next_status(self.obj, book, ready, self.now)
        self.obj = {**self.obj, "status": self.last.status}
        assert_valid(self.obj)
        return self

    @property
    def status(self) -> dict[str, Any]:
        return self.obj["status"]  # type: ignore[no-any-return]

    @property
    def predictor(self) -> dict[str, Any]:
        return self.status["components"]["predictor"]  # type: ignore[no-any-return]

    def traffic(self) -> list[tuple[str | None, str, bool, int]]:
        return [
            (t.get("tag"), t["revisionName"], t["latestRevision"], t["percent"])
            for t in self.predictor.get("traffic", ())
        ]

    def conditions(self) -> dict[str, tuple[str, str | None]]:
        return {c["type"]: (c["status"], c.get("reason")) for c in self.status["conditions"]}

    def revisions(self) -> dict[str, str | None]:
        stored = json.loads(self.status["annotations"][REVISIONS])
        return {name: entry["storageUri"] for name, entry in stored.items()}


def canary(uri: str, percent: int | None) -> dict[str, Any]:
    return {"spec": {"predictor": {"model": {"storageUri": uri}, "canaryTrafficPercent": percent}}}


ALL_READY = {
    "IngressReady": ("True", None),
    "PredictorReady": ("True", None),
    "Ready": ("True", None),
}


@pytest.fixture
def world() -> World:
    return World(created()).reconcile()


# ---------------------------------------------------------------- serverless


def test_first_create_rolls_out_revision_one(world: World) -> None:
    assert world.traffic() == [("latest", R1, True, 100)]
    assert world.predictor["latestCreatedRevision"] == R1
    assert world.predictor["latestReadyRevision"] == R1
    assert world.predictor["latestRolledoutRevision"] == R1
    assert "previousRolledoutRevision" not in world.predictor
    assert world.conditions() == ALL_READY
    assert world.status["observedGeneration"] == 1
    assert world.status["deploymentMode"] == "Serverless"
    assert world.status["url"] == "http://fraud-shop.sandbox.local"
    assert world.predictor["url"] == "http://fraud-predictor-shop.sandbox.local"
    assert world.status["annotations"][COUNTER] == "1"
    assert world.revisions() == {R1: S}
    assert kserve_serverless.read_split(world.obj) == RouteObservation(S, None, 0, True)


def test_canary_at_10_splits_latest_and_prev(world: World) -> None:
    world.change(canary(C, 10))
    assert world.traffic() == [("latest", R2, True, 10), ("prev", R1, False, 90)]
    assert world.predictor["latestRolledoutRevision"] == R1
    assert world.predictor["latestCreatedRevision"] == R2
    assert world.status["observedGeneration"] == 2
    assert world.conditions() == ALL_READY
    assert world.revisions() == {R1: S, R2: C}
    assert kserve_serverless.read_split(world.obj) == RouteObservation(S, C, 10, True)


def test_a_new_weight_alone_makes_no_revision(world: World) -> None:
    world.change(canary(C, 10)).change(canary(C, 40))
    assert world.traffic() == [("latest", R2, True, 40), ("prev", R1, False, 60)]
    assert world.status["annotations"][COUNTER] == "2"


def test_canary_at_0_keeps_all_traffic_on_prev(world: World) -> None:
    world.change(canary(C, 10)).change(canary(C, 0))
    assert world.traffic() == [("latest", R2, True, 0), ("prev", R1, False, 100)]
    assert kserve_serverless.read_split(world.obj) == RouteObservation(S, C, 0, True)


def test_promotion_moves_everything_to_latest(world: World) -> None:
    world.change(canary(C, 50)).change({"spec": {"predictor": {"canaryTrafficPercent": None}}})
    assert world.traffic() == [("latest", R2, True, 100)]
    assert world.predictor["latestRolledoutRevision"] == R2
    assert world.predictor["previousRolledoutRevision"] == R1
    assert world.last is not None
    assert world.last.retire == (R1,)
    assert kserve_serverless.read_split(world.obj) == RouteObservation(C, None, 0, True)


def test_rollback_in_the_routers_two_calls_builds_a_new_stable_revision(world: World) -> None:
    world.change(canary(C, 30)).change(canary(C, 0))
    world.change(canary(S, 0))
    assert world.traffic() == [("latest", R3, True, 0), ("prev", R1, False, 100)]
    assert world.last is not None
    assert world.last.retire == (R2,)
    assert kserve_serverless.read_split(world.obj) == RouteObservation(S, S, 0, True)
    world.change({"spec": {"predictor": {"canaryTrafficPercent": None}}})
    assert world.traffic() == [("latest", R3, True, 100)]
    assert world.predictor["latestRolledoutRevision"] == R3
    assert world.predictor["previousRolledoutRevision"] == R1
    assert world.revisions() == {R1: S, R3: S}
    assert kserve_serverless.read_split(world.obj) == RouteObservation(S, None, 0, True)


def test_rollback_in_one_patch_also_ends_on_a_new_stable_revision(world: World) -> None:
    world.change(canary(C, 0)).change(canary(S, None))
    assert world.traffic() == [("latest", R3, True, 100)]
    assert world.predictor["latestRolledoutRevision"] == R3


def test_a_latest_revision_not_ready_leaves_traffic_where_it_was(world: World) -> None:
    world.not_ready.add(R2)
    world.change(canary(C, 10))
    assert world.traffic() == [("latest", R1, True, 10), ("prev", R1, False, 90)]
    assert world.predictor["latestCreatedRevision"] == R2
    assert world.predictor["latestReadyRevision"] == R1
    assert world.conditions() == {
        "IngressReady": ("True", None),
        "PredictorReady": ("False", "RevisionMissing"),
        "Ready": ("False", "RevisionMissing"),
    }
    assert world.status["modelStatus"]["transitionStatus"] == "InProgress"
    assert kserve_serverless.read_split(world.obj) == RouteObservation(S, C, 0, False)
    world.not_ready.clear()
    world.reconcile()
    assert world.traffic() == [("latest", R2, True, 10), ("prev", R1, False, 90)]
    assert world.conditions() == ALL_READY


def test_removing_the_canary_field_before_the_new_revision_is_ready_serves_the_canary(
    world: World,
) -> None:
    """Why the router restores in two calls: Knative's latestRevision is the latest *ready*
    one, so with the field gone and the stable model's new revision not up, the canary's
    revision takes everything."""
    world.change(canary(C, 0))
    world.not_ready.add(R3)
    world.change(canary(S, None))
    assert world.traffic() == [("latest", R2, True, 100)]
    assert kserve_serverless.read_split(world.obj).ready is False


def test_the_two_call_restore_never_routes_to_the_canary_meanwhile(world: World) -> None:
    world.change(canary(C, 0))
    world.not_ready.add(R3)
    world.change(canary(S, 0))
    assert world.traffic() == [("latest", R2, True, 0), ("prev", R1, False, 100)]
    assert kserve_serverless.restore_patch(world.obj, ModelVersionRef(S, S)) == {}


def test_kserve_rolls_back_a_canary_that_reached_100_percent(world: World) -> None:
    world.change(canary(C, 100))
    assert world.traffic() == [("latest", R2, True, 100)]
    assert world.predictor["latestRolledoutRevision"] == R2
    world.change(canary(C, 0))
    assert world.traffic() == [("latest", R2, True, 0), ("prev", R1, False, 100)]
    assert world.predictor["latestRolledoutRevision"] == R1


def test_reconciling_again_changes_nothing(world: World) -> None:
    world.change(canary(C, 10))
    before = copy.deepcopy(world.status)
    world.now = T1
    world.reconcile()
    assert merge_patch(before, world.status) == {}


def test_condition_times_move_only_when_a_status_flips(world: World) -> None:
    world.now = T1
    world.not_ready.add(R2)
    world.change(canary(C, 10))
    times = {c["type"]: c["lastTransitionTime"] for c in world.status["conditions"]}
    assert times == {"IngressReady": T0, "PredictorReady": T1, "Ready": T1}


def test_a_fresh_start_carries_on_from_the_status_annotations(world: World) -> None:
    world.change(canary(C, 10))
    survivor = json.loads(json.dumps(world.obj))  # what a restarted controller reads back
    book = revisions.read_book(survivor)
    assert book.counter == 2
    assert {n: r.storage_uri for n, r in book.revisions.items()} == {R1: S, R2: C}
    assert book.revisions[R2].predictor["model"]["storageUri"] == C
    assert "canaryTrafficPercent" not in book.revisions[R2].predictor
    restarted = World(survivor)
    restarted.change(canary(S, 0))
    assert restarted.predictor["latestCreatedRevision"] == R3
    assert restarted.revisions()[R3] == S


def test_unreadable_bookkeeping_starts_a_new_book(world: World) -> None:
    world.obj["status"]["annotations"][COUNTER] = "many"
    assert revisions.read_book(world.obj) == revisions.Book()


def test_to_check_lists_the_new_and_the_serving_revisions(world: World) -> None:
    world.change(canary(C, 10))
    world.obj = apply_merge_patch(world.obj, canary(S, 0))
    book = revisions.plan(world.obj)
    assert [r.name for r in revisions.to_check(world.obj, book)] == [R3, R2, R1]


# ---------------------------------------------------------------- raw

V2 = "fraud-v2-predictor-00002"


def raw_canary(uri: str | None, percent: int = 0, name: str | None = "v2") -> dict[str, Any]:
    if uri is None:
        return {"spec": {"canary": None}}
    predictor = copy.deepcopy(PREDICTOR)
    predictor["model"].update(storageUri=uri, name="kserve-container")
    if name is not None:
        predictor["name"] = name
    return {"spec": {"canary": [{"predictor": predictor, "trafficPercent": percent}]}}


@pytest.fixture
def raw() -> World:
    return World(created(raw=True)).reconcile()


def test_raw_create_serves_the_predictor(raw: World) -> None:
    assert raw.status["deploymentMode"] == "RawDeployment"
    assert raw.predictor == {
        "latestCreatedRevision": R1,
        "latestReadyRevision": R1,
        "url": "http://fraud-predictor-shop.sandbox.local",
    }
    assert "canaryStatuses" not in raw.status
    assert raw.conditions() == ALL_READY
    assert kserve_raw.read_split(raw.obj) == RouteObservation(S, None, 0, True)


def test_raw_canary_is_a_deployment_named_after_it_and_gets_its_share(raw: World) -> None:
    raw.change(raw_canary(C, 10))
    assert raw.status["canaryStatuses"] == [{"name": "v2", "ready": True, "trafficPercent": 10}]
    assert raw.revisions() == {R1: S, V2: C}
    assert kserve_raw.read_split(raw.obj) == RouteObservation(S, C, 10, True)
    raw.change(raw_canary(C, 35))
    assert raw.status["canaryStatuses"][0]["trafficPercent"] == 35
    assert raw.status["annotations"][COUNTER] == "2"


def test_an_unnamed_raw_canary_is_named_by_its_place(raw: World) -> None:
    raw.change(raw_canary(C, 10, name=None))
    assert raw.status["canaryStatuses"] == [
        {"name": "fraud-canary-0", "ready": True, "trafficPercent": 10}
    ]
    assert raw.revisions() == {R1: S, "fraud-canary-0-predictor-00002": C}


def test_raw_canary_not_ready_gets_no_traffic(raw: World) -> None:
    raw.not_ready.add(V2)
    raw.change(raw_canary(C, 10))
    assert raw.status["canaryStatuses"] == [{"name": "v2", "ready": False, "trafficPercent": 0}]
    assert raw.conditions()["Ready"] == ("False", "CanaryNotReady")
    assert raw.conditions()["PredictorReady"] == ("True", None)
    assert kserve_raw.read_split(raw.obj) == RouteObservation(S, C, 0, False)


def test_raw_promotion_by_name_keeps_the_canarys_deployment(raw: World) -> None:
    """KServe: naming the predictor after the canary promotes it without a restart."""
    raw.change(raw_canary(C, 50))
    raw.change(kserve_raw.promote_patch(raw.obj, ModelVersionRef(C, C, "fraud", "2")))
    assert "canaryStatuses" not in raw.status
    assert raw.predictor["latestCreatedRevision"] == V2
    assert raw.predictor["latestReadyRevision"] == V2
    assert raw.status["annotations"][COUNTER] == "2", "no new revision"
    assert raw.conditions() == ALL_READY
    assert raw.last is not None
    assert raw.last.retire == (R1,)
    assert kserve_raw.read_split(raw.obj) == RouteObservation(C, None, 0, True)


def test_raw_promotion_of_another_model_rolls_the_predictor(raw: World) -> None:
    raw.change(raw_canary(C, 50))
    raw.not_ready.add(R3)
    raw.change({"spec": {"predictor": {"model": {"storageUri": C}}, "canary": None}})
    assert raw.predictor["latestCreatedRevision"] == R3
    assert raw.predictor["latestReadyRevision"] == R1, "the old Deployment serves meanwhile"
    assert raw.conditions()["Ready"] == ("False", "RevisionMissing")
    assert raw.last is not None
    assert raw.last.retire == (V2,)
    raw.not_ready.clear()
    raw.reconcile()
    assert raw.predictor["latestReadyRevision"] == R3
    assert raw.last.retire == (R1,)
    assert kserve_raw.read_split(raw.obj) == RouteObservation(C, None, 0, True)


def test_raw_restore_drops_the_canary_only(raw: World) -> None:
    raw.change(raw_canary(C, 0)).change(raw_canary(None))
    assert raw.predictor["latestCreatedRevision"] == R1
    assert raw.revisions() == {R1: S}
    assert kserve_raw.read_split(raw.obj) == RouteObservation(S, None, 0, True)


def test_the_router_names_each_arm_by_its_revision_for_metric_queries(world: World) -> None:
    """Metric templates select each arm by KServe's revision (or deployment) name."""
    alone = kserve_serverless.read_split(world.obj)
    assert (alone.stable_revision, alone.canary_revision) == (R1, None)
    split = kserve_serverless.read_split(world.change(canary(C, 10)).obj)
    assert (split.stable_revision, split.canary_revision) == (R1, R2)
    raw = World(created(raw=True)).reconcile()
    raw.change(
        kserve_raw.weight_patch(
            raw.obj, ModelVersionRef(S, S), ModelVersionRef(C, C, "fraud", "2"), 10
        )
    )
    observed = kserve_raw.read_split(raw.obj)
    assert observed.stable_revision == "fraud-predictor"
    assert observed.canary_revision == "fraud-v2-predictor"
