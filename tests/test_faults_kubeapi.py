"""Kubernetes API faults at every call site the operator uses, and cut watch streams.

A reference rollout (v1 stable, v2 through weighted steps and a pause to promotion, judged by
a MetricTemplate whose token is a Secret reference, then deleted through the finalizer) shows
in the emulator's audit every (verb, group, resource, subresource) the operator calls. Each of
those call sites then gets each fault: 500, 409, 429 with Retry-After, and a request held
until the client gives up and dropped unanswered (a real client-side timeout, not a 504).
Every scenario runs the same rollout in its own namespace, all at once against one operator.

For each: the rollout ends Succeeded with v2 stable, the InferenceService takes each
(storageUri, weight) once and in order, history holds each entry once, each event reason is
posted the expected number of times, and the audit shows the faults were really served (those
are the counts recorded in tests/ledger.py). Watch streams are cut (and answered 410 Gone)
while the rollout changes; the operator must still act on the change.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

import ledger
from modelrollout import api
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from processes import ISVC_CRD, Kubectl, kserve_controller, operator

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
OPERATOR_AGENTS = ("kopf/", "modelrollout/")
QUERY = "faults_success_rate"
#: How long the operator waits for one API answer (MODELROLLOUT_KUBE_REQUEST_TIMEOUT_SECONDS).
CLIENT_TIMEOUT_SECONDS = 3
#: A held request outlives any client timeout: only the client's own timeout frees it.
HELD_SECONDS = 600.0
STEPS: list[dict[str, Any]] = [
    {"setWeight": 30},
    {"pause": {"duration": "1s"}},
    {"setWeight": 60},
    {"pause": {"duration": "1s"}},
]
#: The event reasons one promotion posts, and how many times.
PROMOTION_EVENTS = Counter(
    {
        "Initialized": 1,
        "RolloutStarted": 1,
        "TrafficWeightUpdated": 2,
        "StepAdvanced": 4,
        "RolloutPromoted": 1,
    }
)

State = tuple[str | None, int | None]


@dataclass(frozen=True)
class Site:
    """One operator call site, as RBAC and the audit see it."""

    verb: str
    group: str
    resource: str
    subresource: str
    namespaced: bool
    agent: str  # the User-Agent prefix of the client that calls it

    @property
    def label(self) -> str:
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {self.resource}{sub}"

    def ledger_kind(self, fault: str) -> str:
        return f"kube-api {fault} {self.label} ({self.agent.rstrip('/')})"


@dataclass(frozen=True)
class FaultKind:
    name: str
    code: int  # 0: held and dropped unanswered
    count: int
    delay_seconds: float = 0.0


FAULT_KINDS = (
    FaultKind("500", 500, 2),
    FaultKind("409", 409, 2),
    FaultKind("429", 429, 2),
    FaultKind("timeout", 0, 1, HELD_SECONDS),
)


# ---------------------------------------------------------------- observing the cluster


class Recorder:
    """Watches one resource cluster-wide (list, then watch from the list's resourceVersion,
    resuming after cuts) and keeps, per (namespace, name), the latest object and each
    distinct value of ``project`` in order."""

    def __init__(
        self,
        api_client: client.ApiClient,
        plural: tuple[str, str, str],
        project: Callable[[dict[str, Any]], Any],
    ) -> None:
        self.objects = client.CustomObjectsApi(api_client)
        self.group, self.version, self.plural = plural
        self.project = project
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}
        self.states: dict[tuple[str, str], list[Any]] = {}
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _see(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        with self.changed:
            if kind == "DELETED":
                self.latest.pop(key, None)
            else:
                self.latest[key] = obj
                states = self.states.setdefault(key, [])
                state = self.project(obj)
                if not states or states[-1] != state:
                    states.append(state)
            self.changed.notify_all()

    def _run(self) -> None:
        version: str | None = None
        while not self.stop.is_set():
            try:
                if version is None:
                    listed = self.objects.list_cluster_custom_object(
                        self.group, self.version, self.plural, _request_timeout=10
                    )
                    for item in listed["items"]:
                        self._see("ADDED", item)
                    version = listed["metadata"]["resourceVersion"]
                response = self.objects.list_cluster_custom_object(
                    self.group,
                    self.version,
                    self.plural,
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,
                    _preload_content=False,
                    _request_timeout=10,
                )
                for line in response:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        version = None
                        break
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._see(event["type"], event["object"])
            except Exception:  # a cut stream or a busy server: resume from the last version
                self.stop.wait(0.2)

    def wait(
        self,
        what: str,
        key: tuple[str, str],
        probe: Callable[[dict[str, Any] | None], bool],
        timeout: float,
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not probe(self.latest.get(key)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what} "
                        f"(last phase: {_phase(self.latest.get(key) or {})!r})"
                    )
                self.changed.wait(left)
            return self.latest.get(key)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)


def _traffic(obj: dict[str, Any]) -> State:
    predictor = obj["spec"]["predictor"]
    return predictor.get("model", {}).get("storageUri"), predictor.get("canaryTrafficPercent")


def _phase(obj: dict[str, Any]) -> Any:
    return obj.get("status", {}).get("phase")


# ---------------------------------------------------------------- the world


class World:
    def __init__(self, kube: KubeApiProcess, workdir: Path) -> None:
        self.kube = kube
        self.workdir = workdir
        configuration = client.Configuration()
        config.load_kube_config(str(kube.kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 64  # every scenario's thread at once
        self.client = client.ApiClient(configuration)
        self.objects = client.CustomObjectsApi(self.client)
        self.core = client.CoreV1Api(self.client)
        self.metrics = workdir / "metrics.json"
        self.metrics.write_text(json.dumps({QUERY: 0.999}))
        self.operator = operator(
            workdir,
            kube.kubeconfig,
            MODELROLLOUT_METRICS=f"static:{self.metrics}",
            MODELROLLOUT_KUBE_REQUEST_TIMEOUT_SECONDS=str(CLIENT_TIMEOUT_SECONDS),
        )
        self.kserve = kserve_controller(workdir, kube.kubeconfig)
        self.rollouts = Recorder(self.client, (api.GROUP, api.VERSION, api.ROLLOUT_PLURAL), _phase)
        self.isvcs = Recorder(self.client, ISVC, _traffic)

    def close(self) -> None:
        self.rollouts.close()
        self.isvcs.close()

    # Given ...

    def namespace(self, ns: str) -> None:
        self.core.create_namespace({"metadata": {"name": ns}})
        self.core.create_namespaced_secret(
            ns, {"metadata": {"name": "prom-token"}, "stringData": {"token": "t0ken-" + ns}}
        )
        template = {
            "apiVersion": api.API_VERSION,
            "kind": api.TEMPLATE_KIND,
            "metadata": {"name": "success-rate"},
            "spec": {
                "provider": {
                    "prometheus": {
                        "address": "http://127.0.0.1:9",
                        "secretRef": {"name": "prom-token", "key": "token"},
                    }
                },
                "query": QUERY,
            },
        }
        self.objects.create_namespaced_custom_object(
            api.GROUP, api.VERSION, ns, api.TEMPLATE_PLURAL, template
        )

    def create(self, ns: str, name: str, steps: list[dict[str, Any]] = STEPS) -> None:
        body = {
            "apiVersion": api.API_VERSION,
            "kind": api.ROLLOUT_KIND,
            "metadata": {"name": name},
            "spec": {
                "model": {"uri": f"models:/{name}/1"},
                "target": {
                    "inferenceService": name,
                    "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
                },
                "strategy": {
                    "steps": steps,
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
        self.objects.create_namespaced_custom_object(
            api.GROUP, api.VERSION, ns, api.ROLLOUT_PLURAL, body
        )

    def patch(self, ns: str, name: str, patch: dict[str, Any]) -> None:
        self.objects.patch_namespaced_custom_object(
            api.GROUP, api.VERSION, ns, api.ROLLOUT_PLURAL, name, patch
        )

    def new_model(self, ns: str, name: str, version: int) -> None:
        self.patch(ns, name, {"spec": {"model": {"uri": f"models:/{name}/{version}"}}})

    def delete(self, ns: str, name: str) -> None:
        self.objects.delete_namespaced_custom_object(
            api.GROUP, api.VERSION, ns, api.ROLLOUT_PLURAL, name
        )

    # Then ...

    def wait_stable(self, ns: str, name: str, version: int, timeout: float) -> dict[str, Any]:
        def probe(obj: dict[str, Any] | None) -> bool:
            status = (obj or {}).get("status", {})
            return status.get("phase") == "Succeeded" and status.get("stable", {}).get(
                "storageUri"
            ) == storage(name, version)

        found = self.rollouts.wait(
            f"{ns}/{name} with v{version} stable", (ns, name), probe, timeout
        )
        assert found is not None
        return found

    def wait_phase(self, ns: str, name: str, phase: str, timeout: float) -> dict[str, Any]:
        found = self.rollouts.wait(
            f"{ns}/{name} {phase}",
            (ns, name),
            lambda o: o is not None and _phase(o) == phase,
            timeout,
        )
        assert found is not None
        return found

    def wait_gone(self, ns: str, name: str, timeout: float) -> None:
        self.rollouts.wait(f"{ns}/{name} gone", (ns, name), lambda o: o is None, timeout)

    def traffic(self, ns: str, name: str) -> list[State]:
        with self.isvcs.changed:
            return list(self.isvcs.states.get((ns, name), []))

    def event_reasons(self, ns: str, name: str) -> Counter[str]:
        events = self.core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={name}"
        ).items
        return Counter(e.reason for e in events)


def storage(name: str, version: int) -> str:
    return f"s3://models/{name}/{version}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Given an emulator of its own (its faults and cuts touch nobody else), the KServe CRD,
    the local KServe controller and the operator with a 3 s API client timeout."""
    workdir = tmp_path_factory.mktemp("faults-kubeapi")
    crds = sorted((REPO / "crds").glob("*.modelrollout.io.yaml"))
    with KubeApiProcess.start(workdir, crds=crds) as kube:
        kubectl = Kubectl(kube.kubeconfig)
        kubectl("apply", "-f", str(ISVC_CRD))
        kubectl("wait", "--for", "condition=established", "crd/inferenceservices.serving.kserve.io")
        found = World(kube, workdir)
        found.kserve.start()
        found.operator.start()
        try:
            yield found
        finally:
            found.operator.stop()
            found.kserve.stop()
            found.close()


# ---------------------------------------------------------------- one rollout, checked


def promote_v2(world: World, ns: str, name: str, timeout: float, may_lose: int = 0) -> list[str]:
    """v1 stable, then v2 through every step to promotion, then deleted; what went wrong.

    ``may_lose``: how many events may be missing (kopf drops an event whose create is
    answered 409: it never retries a conflict); none may be posted twice."""
    world.namespace(ns)
    world.create(ns, name)
    world.wait_stable(ns, name, 1, timeout)
    world.new_model(ns, name, 2)
    status = world.wait_stable(ns, name, 2, timeout)["status"]
    problems: list[str] = []
    history = [h["outcome"] for h in status.get("history", [])]
    if history != ["Initialized", "Promoted"]:
        problems.append(f"history {history}")
    # Promoted on evidence: the metric passed at least once and its last verdict is a pass.
    metric = status.get("analysis", {}).get("metrics", [{}])[0]
    if metric.get("verdict") != "PASS" or metric.get("successful", 0) < 1:
        problems.append(f"promoted with analysis {metric}")
    world.isvcs.wait(
        f"{ns}/{name} v2 alone",
        (ns, name),
        lambda o: o is not None and _traffic(o) == (storage(name, 2), None),
        timeout,
    )
    traffic = world.traffic(ns, name)
    expected = [
        (storage(name, 1), None),
        (storage(name, 2), 30),
        (storage(name, 2), 60),
        (storage(name, 2), None),
    ]
    if traffic != expected:
        problems.append(f"traffic {traffic}")
    world.delete(ns, name)
    world.wait_gone(ns, name, timeout)
    # kopf posts events from a queue per object, in order, retrying each: after a fault they
    # arrive late. Wait for them all (bounded), then judge what came.
    deadline = time.monotonic() + 30
    reasons = world.event_reasons(ns, name)
    while PROMOTION_EVENTS - reasons and time.monotonic() < deadline:
        time.sleep(0.5)
        reasons = world.event_reasons(ns, name)
    missing = sum((PROMOTION_EVENTS - reasons).values())
    for reason, count in PROMOTION_EVENTS.items():
        if reasons[reason] > count or (reasons[reason] < count and missing > may_lose):
            problems.append(f"event {reason} posted {reasons[reason]} times, not {count}")
    return problems


def operator_sites(audit: list[dict[str, Any]]) -> set[Site]:
    return {
        Site(
            a["verb"],
            a["group"],
            a["resource"],
            a["subresource"],
            bool(a["namespace"]),
            next(p for p in OPERATOR_AGENTS if a["userAgent"].startswith(p)),
        )
        for a in audit
        if a["userAgent"].startswith(OPERATOR_AGENTS)
    }


def isvc_writes(audit: list[dict[str, Any]], namespace: str) -> Counter[str]:
    """The InferenceService writes the operator made in ``namespace`` that the server took."""
    return Counter(
        a["verb"]
        for a in audit
        if a["userAgent"].startswith("modelrollout/")
        and a["resource"] == ISVC[2]
        and a["verb"] in ("create", "patch", "update")
        and a["namespace"] == namespace
        and 200 <= a["code"] < 300
    )


@pytest.fixture(scope="module")
def reference(world: World) -> list[dict[str, Any]]:
    """The audit of a reference rollout run with no fault."""
    world.kube.clear_audit()
    problems = promote_v2(world, "ref", "ref", timeout=90)
    assert problems == []
    return world.kube.audit()


@pytest.fixture(scope="module")
def call_sites(reference: list[dict[str, Any]]) -> set[Site]:
    """The call sites are what the reference's audit shows, not a list kept by hand."""
    return operator_sites(reference)


def test_the_reference_rollout_covers_the_operator_call_sites(call_sites: set[Site]) -> None:
    """The call sites come from the audit, not from a list kept by hand; the operator's main
    ones must be among them, or the reference rollout did not exercise it."""
    labels = {(s.label, s.group) for s in call_sites}
    for wanted in (
        ("get inferenceservices", ISVC[0]),
        ("patch inferenceservices", ISVC[0]),
        ("create inferenceservices", ISVC[0]),
        ("patch modelrollouts/status", api.GROUP),
        ("patch modelrollouts", api.GROUP),
        ("list modelrollouts", api.GROUP),
        ("watch modelrollouts", api.GROUP),
        ("get metrictemplates", api.GROUP),
        ("get secrets", ""),
        ("create events", ""),
    ):
        assert wanted in labels


def test_the_reference_rollout_writes_the_inferenceservice_once_per_state(
    reference: list[dict[str, Any]],
) -> None:
    """One create (v1 alone), then one patch per state: 30%, 60%, v2 alone."""
    assert isvc_writes(reference, "ref") == Counter({"create": 1, "patch": 3})


# ---------------------------------------------------------------- the fault matrix


def _served(audit: list[dict[str, Any]], site: Site, code: int, namespace: str | None) -> int:
    return sum(
        1
        for a in audit
        if a["userAgent"].startswith(site.agent)
        and (a["verb"], a["group"], a["resource"], a["subresource"])
        == (site.verb, site.group, site.resource, site.subresource)
        and (namespace is None or a["namespace"] == namespace)
        and a["code"] == code
    )


def _inject(world: World, site: Site, kind: FaultKind, namespace: str | None, **extra: Any) -> None:
    world.kube.inject_fault(
        verb=site.verb,
        group=site.group,
        resource=site.resource,
        subresource=site.subresource,
        namespace=namespace,
        user_agent=site.agent,
        code=kind.code,
        count=kind.count,
        delay_seconds=extra.get("delay_seconds", kind.delay_seconds),
        retry_after_seconds=1,
    )


def _events_lost_to(site: Site, kind: FaultKind) -> int:
    return kind.count if (site.label, kind.code) == ("create events", 409) else 0


def _kinds_for(site: Site) -> tuple[FaultKind, ...]:
    """Every fault, except 409 on kopf's cluster-wide list and watch: kube never answers a
    read with 409, and kopf stops that resource's observer for good on it."""
    if site.namespaced:
        return FAULT_KINDS
    return tuple(k for k in FAULT_KINDS if k.code != 409)


def _provoke_clusterwide(world: World, sites: list[Site], timeout: float) -> None:
    """Faults on the cluster-wide list and watch calls, one kind at a time: a cut makes the
    operator watch again (and a 410 makes it list again), which meets the pending fault."""
    for site in sites:
        for kind in _kinds_for(site):
            # A held watch is dropped after a few seconds: kopf's own limit is 70 s of silence.
            _inject(world, site, kind, None, delay_seconds=min(kind.delay_seconds, 3.0))
            if site.verb == "list":
                world.kube.inject_fault(
                    verb="watch", group=site.group, resource=site.resource, code=410,
                    user_agent=site.agent,
                )  # fmt: skip
            deadline = time.monotonic() + timeout
            while [f for f in world.kube.pending_faults() if f["namespace"] is None]:
                assert time.monotonic() < deadline, f"{site.label} {kind.name} never served"
                world.kube.cut_watches(group=site.group, resource=site.resource)
                time.sleep(1.0)  # a real operator's reconnect: not a clock we control


def test_every_call_site_survives_every_fault(
    world: World, reference: list[dict[str, Any]], call_sites: set[Site]
) -> None:
    """Given each call site x each fault in its own namespace (and the cluster-wide calls
    faulted meanwhile), when every rollout runs at once, then each ends with v2 stable,
    each weight once and in order (one write each), each history entry and event once."""
    namespaced = sorted((s for s in call_sites if s.namespaced), key=lambda s: s.label)
    clusterwide = sorted((s for s in call_sites if not s.namespaced), key=lambda s: s.label)
    scenarios = [
        (site, kind, f"f{i:02d}-{kind.name}")
        for i, (site, kind) in enumerate((s, k) for s in namespaced for k in FAULT_KINDS)
    ]
    for site, kind, ns in scenarios:
        _inject(world, site, kind, ns)
    world.kube.clear_audit()
    started = time.monotonic()
    with ThreadPoolExecutor(len(scenarios) + 1) as pool:
        runs = {
            ns: pool.submit(promote_v2, world, ns, "model", 150, _events_lost_to(site, kind))
            for site, kind, ns in scenarios
        }
        provoked = pool.submit(_provoke_clusterwide, world, clusterwide, 60)
        outcomes = {ns: run.exception() or run.result() for ns, run in runs.items()}
        provoking = provoked.exception()
    world.kube.clear_faults()
    elapsed = time.monotonic() - started
    audit = world.kube.audit()
    failed: list[str] = []
    for site, kind, ns in scenarios:
        served = _served(audit, site, kind.code, ns)
        outcome = outcomes[ns]
        if isinstance(outcome, BaseException) or outcome:
            failed.append(f"{ns} {site.label} {kind.name}: {outcome}")
        # A site called fewer times than ``count`` in one rollout is served fewer faults.
        if not 1 <= served <= kind.count:
            failed.append(f"{ns} {site.label} {kind.name}: served {served} of {kind.count}")
        writes = isvc_writes(audit, ns)
        if writes != isvc_writes(reference, "ref"):
            failed.append(f"{ns} {site.label} {kind.name}: InferenceService writes {writes}")
        ledger.fault(site.ledger_kind(kind.name), served)
    for site in clusterwide:
        for kind in _kinds_for(site):
            served = _served(audit, site, kind.code, None)
            ledger.fault(site.ledger_kind(kind.name), min(served, kind.count))
    print(f"matrix: {len(scenarios)} scenarios in {elapsed:.0f}s")
    assert failed == [], "\n".join(failed)
    assert provoking is None


# ---------------------------------------------------------------- cut watch streams


def _audit_since(world: World, mark: int) -> list[dict[str, Any]]:
    return world.kube.audit()[mark:]


def _operator_watch(a: dict[str, Any], code: int) -> bool:
    return (
        a["userAgent"].startswith("kopf/")
        and (a["verb"], a["resource"]) == ("watch", api.ROLLOUT_PLURAL)
        and a["code"] == code
    )


def test_changes_made_while_the_watch_is_cut_are_acted_on(world: World) -> None:
    """Given a canary waiting at 20% in an indefinite pause, when the operator's watch streams
    are cut and its re-watches go unanswered while someone annotates abort, then the abort
    still rolls back; and when a cut is followed by 410 Gone while a new model arrives, the
    operator lists again and starts that model's canary."""
    ns, name = "watch-cut", "model"
    steps: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {}}]
    world.namespace(ns)
    world.create(ns, name, steps)
    world.wait_stable(ns, name, 1, 90)
    world.new_model(ns, name, 2)
    world.rollouts.wait(
        "v2 waiting at 20%",
        (ns, name),
        lambda o: (
            o is not None
            and o.get("status", {}).get("canaryWeight") == 20
            and _phase(o) == "Paused"
        ),
        90,
    )
    mark = len(world.kube.audit())

    world.kube.inject_fault(
        verb="watch", group=api.GROUP, resource=api.ROLLOUT_PLURAL, code=0, count=2,
        delay_seconds=3.0, user_agent="kopf/",
    )  # fmt: skip
    cut = world.kube.cut_watches(group=api.GROUP, resource=api.ROLLOUT_PLURAL)
    world.patch(ns, name, {"metadata": {"annotations": {api.ACTION_ANNOTATION: "abort:1"}}})
    status = world.wait_phase(ns, name, "Failed", 90)["status"]

    assert cut >= 1  # the operator's stream at least (our recorder's too)
    assert status["failedVersions"] == [f"{name}/2"]
    assert [h["outcome"] for h in status["history"]] == ["Initialized", "Aborted"]
    held = [a for a in _audit_since(world, mark) if _operator_watch(a, 0)]
    assert len(held) == 2
    ledger.fault("watch stream cut", cut)
    ledger.fault("kube-api timeout watch modelrollouts (kopf)", len(held))
    mark = len(world.kube.audit())

    world.kube.inject_fault(
        verb="watch", group=api.GROUP, resource=api.ROLLOUT_PLURAL, code=410,
        user_agent="kopf/",
    )  # fmt: skip
    cut = world.kube.cut_watches(group=api.GROUP, resource=api.ROLLOUT_PLURAL)
    world.new_model(ns, name, 3)
    world.rollouts.wait(
        "v3 waiting at 20%",
        (ns, name),
        lambda o: (
            o is not None
            and o.get("status", {}).get("canary", {}).get("version") == "3"
            and o["status"].get("canaryWeight") == 20
            and _phase(o) == "Paused"
        ),
        90,
    )
    world.patch(ns, name, {"metadata": {"annotations": {api.ACTION_ANNOTATION: "promote-full:2"}}})
    status = world.wait_stable(ns, name, 3, 90)["status"]

    since = _audit_since(world, mark)
    gone = [i for i, a in enumerate(since) if _operator_watch(a, 410)]
    assert len(gone) == 1
    relisted = [
        a for a in since[gone[0]:]
        if a["userAgent"].startswith("kopf/") and (a["verb"], a["resource"]) == (
            "list", api.ROLLOUT_PLURAL
        )
    ]  # fmt: skip
    assert relisted, "after 410 Gone the operator lists again"
    ledger.fault("watch stream cut", cut)
    ledger.fault("kube-api 410 watch modelrollouts (kopf)", len(gone))
    assert [h["outcome"] for h in status["history"]] == ["Initialized", "Aborted", "Promoted"]
    world.isvcs.wait(
        "v3 alone",
        (ns, name),
        lambda o: o is not None and _traffic(o) == (storage(name, 3), None),
        60,
    )
    # The rollback takes the canary's traffic first, then puts the spec back to v1.
    assert world.traffic(ns, name) == [
        (storage(name, 1), None),
        (storage(name, 2), 20),
        (storage(name, 2), 0),
        (storage(name, 1), 0),
        (storage(name, 1), None),
        (storage(name, 3), 20),
        (storage(name, 3), None),
    ]
    reasons = world.event_reasons(ns, name)
    for reason, count in (
        ("Initialized", 1),
        ("RolloutStarted", 2),
        ("RolloutAborted", 1),
        ("RolledBack", 1),
        ("StableRestored", 1),
        ("RolloutPromoted", 1),
    ):
        assert reasons[reason] == count, (reason, reasons)


# ---------------------------------------------------------------- the emulator's faults themselves

PROBE_AGENT = "faults-probe/1"


def _open(world: World, path: str, timeout: float) -> Any:
    request = urllib.request.Request(world.kube.url + path, headers={"User-Agent": PROBE_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)


def test_a_held_request_is_a_client_timeout_then_a_dropped_connection(world: World) -> None:
    """Given a no-answer fault, the client waits in vain until its own timeout (no status
    line, unlike a 504); one that waits longer sees the connection dropped unanswered."""
    if "probe" not in {n.metadata.name for n in world.core.list_namespace().items}:
        world.core.create_namespace({"metadata": {"name": "probe"}})
    world.kube.inject_fault(
        verb="get", resource="namespaces", name="probe", code=0, count=2, delay_seconds=2.0,
        user_agent=PROBE_AGENT,
    )  # fmt: skip
    with pytest.raises(TimeoutError):
        _open(world, "/api/v1/namespaces/probe", timeout=0.5)
    with pytest.raises(http.client.RemoteDisconnected):
        _open(world, "/api/v1/namespaces/probe", timeout=30)
    with _open(world, "/api/v1/namespaces/probe", timeout=30) as answer:
        assert json.loads(answer.read())["metadata"]["name"] == "probe"
    codes = [a["code"] for a in world.kube.audit() if a["userAgent"] == PROBE_AGENT]
    assert codes[-3:] == [0, 0, 200]


def test_a_watch_can_be_answered_410_gone_or_cut_mid_stream(world: World) -> None:
    """Given a 410 fault on a watch, the stream is one ERROR event with a 410 Status, as kube
    sends for an expired resourceVersion; a cut ends an open stream without its last chunk."""
    world.kube.inject_fault(verb="watch", resource="namespaces", code=410, user_agent=PROBE_AGENT)
    with _open(world, "/api/v1/namespaces?watch=true", timeout=10) as stream:
        events = [json.loads(line) for line in stream.read().splitlines()]
    assert [(e["type"], e["object"]["code"]) for e in events] == [("ERROR", 410)]

    with _open(world, "/api/v1/namespaces?watch=true&timeoutSeconds=30", timeout=30) as stream:
        assert json.loads(stream.readline())["type"] == "ADDED"
        assert world.kube.cut_watches(group="", resource="namespaces") == 1
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            stream.read()
