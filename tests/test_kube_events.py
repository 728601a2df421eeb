"""KubeEvents: a rollout's events posted once each, even when the pass that made them runs twice.

Against the session's Kubernetes API emulator: an event's name follows from the rollout's uid,
the status its pass started from, its place in the pass and its reason (null fields count as
absent, as after a merge patch); posting the same event twice leaves one Event; a 500 or 429
answer is retried; a refusal that retrying cannot mend is logged and reported, not raised.
"""

from __future__ import annotations

import logging

import pytest
from kubernetes import client

from modelrollout.kube.events import Involved, KubeEvents, event_name
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess

ROLLOUT = Involved("ns", "fraud", "0b7f0c7e-uid")
STATUS = {"phase": "Promoting", "canaryWeight": 100, "canary": {"uri": "models:/fraud/2"}}


def reasons(api_client: client.ApiClient, namespace: str) -> list[str]:
    items = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    return sorted(item.reason for item in items)


def test_the_name_follows_from_uid_origin_place_and_reason_only() -> None:
    origin = {"status": STATUS, "generation": 3}
    name = event_name(ROLLOUT, origin, 0, "RolloutPromoted")

    assert name.startswith("fraud.")
    assert name == event_name(
        ROLLOUT, {"generation": 3, "status": dict(STATUS)}, 0, "RolloutPromoted"
    )
    # A field written as null is absent once the merge patch is applied.
    with_null = {"status": {**STATUS, "rollback": None}, "generation": 3}
    assert name == event_name(ROLLOUT, with_null, 0, "RolloutPromoted")
    assert name != event_name(ROLLOUT, origin, 1, "RolloutPromoted")
    assert name != event_name(ROLLOUT, origin, 0, "RolledBack")
    assert name != event_name(ROLLOUT, {**origin, "generation": 4}, 0, "RolloutPromoted")
    other = Involved("ns", "fraud", "another-uid")
    assert name != event_name(other, origin, 0, "RolloutPromoted")
    assert len(event_name(Involved("ns", "x" * 253, "u"), origin, 0, "R")) <= 253


@pytest.mark.asyncio
async def test_an_event_posted_twice_exists_once(
    api_namespace: tuple[client.ApiClient, str],
) -> None:
    api_client, namespace = api_namespace
    involved = Involved(namespace, "fraud", "uid-1")
    name = event_name(involved, {"status": STATUS}, 0, "RolloutPromoted")
    events = KubeEvents(api_client)

    first = await events.post(involved, name, "Normal", "RolloutPromoted", "fraud v2 promoted")
    again = await events.post(involved, name, "Normal", "RolloutPromoted", "fraud v2 promoted")

    assert (first, again) == (True, True)
    assert reasons(api_client, namespace) == ["RolloutPromoted"]
    event = client.CoreV1Api(api_client).read_namespaced_event(name, namespace)
    assert event.involved_object.name == "fraud"
    assert event.involved_object.kind == "ModelRollout"
    assert event.type == "Normal"


@pytest.mark.asyncio
async def test_server_errors_are_retried_and_a_bad_request_is_reported(
    kube_api: KubeApiProcess,
    api_namespace: tuple[client.ApiClient, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api_client, namespace = api_namespace
    involved = Involved(namespace, "fraud", "uid-2")
    for code in (500, 429):
        kube_api.inject_fault(
            verb="create", resource="events", namespace=namespace, code=code, retry_after_seconds=0
        )
    events = KubeEvents(api_client)

    posted = await events.post(involved, "fraud.retried", "Warning", "RolledBack", "v2 failed")
    refused = await events.post(involved, "Not_A_Name", "Warning", "RolledBack", "v2 failed")

    assert posted is True
    assert refused is False
    assert reasons(api_client, namespace) == ["RolledBack"]
    codes = [
        a["code"]
        for a in kube_api.audit()
        if a["resource"] == "events" and a["verb"] == "create" and a["namespace"] == namespace
    ]
    assert codes[:3] == [500, 429, 201]
    assert any(
        "not posted" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )
