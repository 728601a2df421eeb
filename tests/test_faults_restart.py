"""The operator SIGKILLed in each phase of a rollout, then restarted (issue 8).

One operator process (``modelrollout run``), the local KServe controller and the API server
emulator, each its own process; every test SIGKILLs the operator while its rollout is in one
phase (Initializing, Progressing, Paused, Promoting, RollingBack, Failed, a deletion waiting
on the finalizer, a step waiting for analysis) and starts it again. A phase that lasts one
pass is held in place deterministically by SIGKILLing the KServe controller first (the
InferenceService then never reports the split the operator asked for) and starting it again
after the restart. The sharpest cases hold the operator's status write in the emulator (an
injected fault with ``delaySeconds``) after it has patched the InferenceService and posted its
events, and SIGKILL it then: the restarted operator finds the action done and the status not
written.

After each restart the rollout must end where an undisturbed run ends, and:
- the InferenceService spec takes each (storageUri, canaryTrafficPercent) once and in order,
  and the operator writes it exactly once per change (the emulator's audit);
- ``status.history`` holds each entry once, each event reason is posted the expected number
  of times, and each registry write-back (the static registry's journal) happens once;
- a rollout that failed stays failed, and nothing is promoted unless its analysis passed.

Events are named after the status their pass started from (modelrollout.kube.events), and
the registry write-back writes only what differs, so the pass repeated after a lost status
write posts and writes nothing twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

import ledger
from modelrollout import api
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from processes import Kubectl, kserve_controller, operator, running, wait_for
from recorders import SpecRecorder

pytestmark = pytest.mark.e2e

REASONS = {reason.value for reason in api.Reason}
#: Long enough for the test to SIGKILL the operator while the write hangs; every held write
#: fails in the end, so a hold that runs out early still writes nothing.
STATUS_WRITE_HOLD_SECONDS = 8.0
HELD_WRITES = 3


class Rig:
    """The processes, and the ways to look at (and break) them."""

    def __init__(self, kube_api: KubeApiProcess, workdir: Path) -> None:
        self.api = kube_api
        self.kubectl = Kubectl(kube_api.kubeconfig)
        self.metrics = workdir / "metrics.json"
        self.metrics.write_text("{}")
        self.journal = workdir / "write-backs.jsonl"
        self.operator = operator(
            workdir,
            kube_api.kubeconfig,
            MODELROLLOUT_METRICS=f"static:{self.metrics}",
            MODELROLLOUT_REGISTRY_JOURNAL=str(self.journal),
        )
        self.kserve = kserve_controller(workdir, kube_api.kubeconfig)
        self.recorders: list[SpecRecorder] = []
        reader = config.new_client_from_config(str(kube_api.kubeconfig))
        self.objects = client.CustomObjectsApi(reader)
        self.core = client.CoreV1Api(reader)

    def record(self, namespace: str, name: str) -> SpecRecorder:
        """Start recording the InferenceService's spec (stopped when the test ends)."""
        recorder = SpecRecorder(self.api.kubeconfig, namespace, name, per_generation=True)
        self.recorders.append(recorder)
        return recorder

    # ---------------------------------------------------------------- steering

    def namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    def apply(self, namespace: str, body: dict[str, Any]) -> None:
        body = {"apiVersion": api.API_VERSION, "kind": api.ROLLOUT_KIND, **body}
        body["metadata"] = {**body["metadata"], "namespace": namespace}
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))

    def want(self, namespace: str, name: str, version: int) -> None:
        patch = json.dumps({"spec": {"model": {"uri": f"models:/{name}/{version}"}}})
        self.kubectl("patch", "mro", name, "-n", namespace, "--type", "merge", "-p", patch)

    def act(self, namespace: str, name: str, action: str) -> None:
        self.kubectl("annotate", "mro", name, "-n", namespace, f"{api.ACTION_ANNOTATION}={action}")

    def measure(self, query: str, value: float | None) -> None:
        table = json.loads(self.metrics.read_text())
        table[query] = value
        self.metrics.write_text(json.dumps(table))

    # ---------------------------------------------------------------- faults

    def crash_operator(self, phase: str) -> None:
        """SIGKILL the operator (recorded in the ledger) and start it again."""
        assert self.operator.alive(), "the operator died before it was killed"
        self.operator.kill()
        ledger.fault(f"operator SIGKILL in {phase}")
        self.operator.start()

    def freeze_kserve(self) -> None:
        """KServe stops reporting: whatever the operator asks for is never observed."""
        self.kserve.kill()

    def thaw_kserve(self) -> None:
        self.kserve.start()

    def hold_status_writes(self, namespace: str) -> None:
        """The operator's next status writes in ``namespace`` hang, then fail (the pass that
        acts, and a timer pass that may follow it before the kill)."""
        self.api.inject_fault(
            verb="patch",
            group=api.GROUP,
            resource=api.ROLLOUT_PLURAL,
            subresource="status",
            namespace=namespace,
            code=500,
            count=HELD_WRITES,
            delay_seconds=STATUS_WRITE_HOLD_SECONDS,
        )

    def status_write_held(self, namespace: str) -> bool:
        """Whether a status write is hanging (one of the faults is taken)."""
        pending = self.api.pending_faults()
        left: int = sum(f["count"] for f in pending if f.get("namespace") == namespace)
        return left < HELD_WRITES

    def crash_with_status_write_held(self, namespace: str, phase: str) -> None:
        """SIGKILL the operator while its status write hangs; drop the faults it left; start it."""
        assert self.operator.alive(), "the operator died before it was killed"
        self.operator.kill()
        ledger.fault(f"operator SIGKILL in {phase}, status write held")
        # Tests in this session run one at a time: the only pending faults are ours.
        self.api.clear_faults()
        self.operator.start()

    # ---------------------------------------------------------------- looking

    def rollout(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.objects.get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.ROLLOUT_PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.rollout(namespace, name) or {}
        status: dict[str, Any] = found.get("status", {})
        return status

    def wait_phase(
        self, namespace: str, name: str, phase: str, timeout: float = 60
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(namespace, name)
            return status if status.get("phase") == phase else None

        return wait_for(f"{namespace}/{name} {phase}", probe, timeout)

    def isvc(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.objects.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
        )
        return found

    def events(self, namespace: str, name: str) -> Counter[str]:
        """How many times each of our reasons was posted for the rollout."""
        items = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return Counter(e.reason for e in items if e.reason in REASONS)

    def isvc_writes(self, namespace: str) -> int:
        """The InferenceService spec writes the API server accepted in ``namespace``."""
        return sum(
            1
            for call in self.api.audit()
            if call["resource"] == "inferenceservices"
            and call["namespace"] == namespace
            and call["verb"] in ("create", "patch", "update")
            and call["subresource"] == ""
            and call["code"] < 400
        )

    def passes_seen(self, namespace: str) -> int:
        """Passes over rollouts in ``namespace`` so far (each one reads the InferenceService)."""
        return sum(
            1
            for call in self.api.audit()
            if call["resource"] == "inferenceservices"
            and call["namespace"] == namespace
            and call["verb"] == "get"
            and call["userAgent"].startswith("modelrollout/")
        )

    def write_backs(self, rollout: str) -> list[tuple[str, str]]:
        if not self.journal.exists():
            return []
        records = [json.loads(line) for line in self.journal.read_text().splitlines() if line]
        return [(r["model"], r["outcome"]) for r in records if r["rollout"] == rollout]


@pytest.fixture(scope="module")
def rig(kube_api: KubeApiProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Given the emulator, the KServe CRD, the local KServe controller and the operator."""
    found = Rig(kube_api, tmp_path_factory.mktemp("faults-restart"))
    with running(found.kubectl, found.kserve, found.operator):
        yield found


@pytest.fixture(autouse=True)
def _stop_recorders(rig: Rig) -> Iterator[None]:
    yield
    while rig.recorders:
        rig.recorders.pop().close()


def body(name: str, steps: list[dict[str, Any]], **strategy: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": f"models:/{name}/1"},
            "target": {
                "inferenceService": name,
                "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
            },
            "registry": {"writeBack": {"alias": "champion"}},
            "strategy": {"steps": steps, **strategy},
        },
    }


def storage(name: str, version: int) -> str:
    return f"s3://models/{name}/{version}"


def stable_at_v1(
    rig: Rig, namespace: str, name: str, steps: list[dict[str, Any]], **strategy: Any
) -> SpecRecorder:
    recorder = rig.record(namespace, name)
    rig.apply(namespace, body(name, steps, **strategy))
    rig.wait_phase(namespace, name, "Succeeded")
    return recorder


def serves_alone(rig: Rig, namespace: str, name: str, version: int) -> bool:
    isvc = rig.isvc(namespace, name)
    predictor = isvc["spec"]["predictor"]
    traffic = isvc.get("status", {}).get("components", {}).get("predictor", {}).get("traffic", [])
    return (
        predictor["model"]["storageUri"] == storage(name, version)
        and "canaryTrafficPercent" not in predictor
        and [t["percent"] for t in traffic] == [100]
    )


def outcomes(status: dict[str, Any]) -> list[str]:
    return [h["outcome"] for h in status.get("history", [])]


def test_killed_while_initializing(rig: Rig) -> None:
    """Given a first deployment waiting for KServe, when the operator is killed and restarted,
    then v1 becomes stable once: one create, one Initialized entry, one event of each."""
    ns = rig.namespace("restart-init")
    recorder = rig.record(ns, "fraud")
    rig.freeze_kserve()
    rig.apply(ns, body("fraud", [{"setWeight": 50}]))
    rig.wait_phase(ns, "fraud", "Initializing")

    rig.crash_operator("Initializing")
    rig.thaw_kserve()
    status = rig.wait_phase(ns, "fraud", "Succeeded")

    assert status["stable"]["storageUri"] == storage("fraud", 1)
    assert outcomes(status) == ["Initialized"]
    assert rig.events(ns, "fraud") == Counter(Initializing=1, Initialized=1)
    assert recorder.close() == [(storage("fraud", 1), None)]
    assert rig.isvc_writes(ns) == 1
    assert rig.write_backs(f"{ns}/fraud") == [("fraud/1", "Initialized")]


def test_killed_while_progressing(rig: Rig) -> None:
    """Given a canary whose first weight KServe has not reported yet, when the operator is
    killed and restarted, then it does not patch the weight again and the steps go on."""
    ns = rig.namespace("restart-progressing")
    recorder = stable_at_v1(rig, ns, "churn", [{"setWeight": 30}, {"pause": {"duration": "1s"}}])
    rig.freeze_kserve()
    rig.want(ns, "churn", 2)
    waiting = rig.wait_phase(ns, "churn", "Progressing")
    assert waiting["canaryWeight"] == 30

    rig.crash_operator("Progressing")
    rig.thaw_kserve()
    status = rig.wait_phase(ns, "churn", "Succeeded", timeout=90)

    assert status["stable"]["storageUri"] == storage("churn", 2)
    assert outcomes(status) == ["Initialized", "Promoted"]
    wait_for("v2 alone", lambda: serves_alone(rig, ns, "churn", 2))
    states = [(storage("churn", 1), None), (storage("churn", 2), 30), (storage("churn", 2), None)]
    assert recorder.close() == states
    assert rig.isvc_writes(ns) == len(states)
    assert rig.events(ns, "churn") == Counter(
        Initializing=1, Initialized=1, RolloutStarted=1, TrafficWeightUpdated=1,
        StepAdvanced=2, RolloutPaused=1, RolloutResumed=1, Promoting=1, RolloutPromoted=1,
    )  # fmt: skip
    assert rig.write_backs(f"{ns}/churn") == [("churn/1", "Initialized"), ("churn/2", "Promoted")]


def test_killed_while_promoting(rig: Rig) -> None:
    """Given a promotion KServe has not reported yet, when the operator is killed and
    restarted, then the canary is promoted once."""
    ns = rig.namespace("restart-promoting")
    recorder = stable_at_v1(rig, ns, "eta", [{"setWeight": 50}, {"pause": {}}])
    rig.want(ns, "eta", 2)
    rig.wait_phase(ns, "eta", "Paused")
    rig.freeze_kserve()
    rig.act(ns, "eta", "promote-full:1")
    rig.wait_phase(ns, "eta", "Promoting")

    rig.crash_operator("Promoting")
    rig.thaw_kserve()
    status = rig.wait_phase(ns, "eta", "Succeeded")

    assert status["stable"]["storageUri"] == storage("eta", 2)
    assert outcomes(status) == ["Initialized", "Promoted"]
    wait_for("v2 alone", lambda: serves_alone(rig, ns, "eta", 2))
    states = [(storage("eta", 1), None), (storage("eta", 2), 50), (storage("eta", 2), None)]
    assert recorder.close() == states
    assert rig.isvc_writes(ns) == len(states)
    assert rig.events(ns, "eta") == Counter(
        Initializing=1, Initialized=1, RolloutStarted=1, TrafficWeightUpdated=1,
        StepAdvanced=1, RolloutPaused=1, Promoting=1, RolloutPromoted=1,
    )  # fmt: skip
    assert rig.write_backs(f"{ns}/eta") == [("eta/1", "Initialized"), ("eta/2", "Promoted")]


def test_killed_while_a_deletion_waits_on_the_finalizer(rig: Rig) -> None:
    """Given a deleted rollout whose traffic is on its way back to stable, when the operator is
    killed and restarted, then stable serves alone and only then does the object go."""
    ns = rig.namespace("restart-delete")
    recorder = stable_at_v1(rig, ns, "scorer", [{"setWeight": 40}, {"pause": {}}])
    rig.want(ns, "scorer", 2)
    rig.wait_phase(ns, "scorer", "Paused")
    rig.freeze_kserve()
    rig.kubectl("delete", "mro", "scorer", "-n", ns, "--wait=false")
    wait_for(
        "traffic sent back to stable",
        lambda: rig.isvc(ns, "scorer")["spec"]["predictor"].get("canaryTrafficPercent") == 0,
    )
    assert (rig.rollout(ns, "scorer") or {})["metadata"]["deletionTimestamp"]

    rig.crash_operator("deletion (finalizer)")
    rig.thaw_kserve()
    wait_for("the rollout to be gone", lambda: rig.rollout(ns, "scorer") is None, timeout=90)

    assert serves_alone(rig, ns, "scorer", 1)
    states = [
        (storage("scorer", 1), None),
        (storage("scorer", 2), 40),
        (storage("scorer", 2), 0),
        (storage("scorer", 1), 0),
        (storage("scorer", 1), None),
    ]
    assert recorder.close() == states
    assert rig.isvc_writes(ns) == len(states)


def analysed(name: str, query: str, count: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"setWeight": 50},
        {"analysis": {"metrics": ["quality"], "count": count}},
        {"pause": {"duration": "1s"}},
    ]
    metric = {"name": "quality", "query": query, "thresholdRange": {"min": 0.99}}
    return body(name, steps, analysis={"interval": "2s", "metrics": [metric]})


def test_killed_mid_analysis_then_bad_metrics_roll_back(rig: Rig) -> None:
    """Given an analysis step half-way with passing measurements, when the operator is killed
    and the metric turns bad while it is down, then the restarted operator rolls back."""
    ns = rig.namespace("restart-analysis-bad")
    query = "restart_analysis_bad_quality"
    rig.measure(query, 0.999)
    recorder = rig.record(ns, "fraud")
    rig.apply(ns, analysed("fraud", query, count=4))
    rig.wait_phase(ns, "fraud", "Succeeded")
    rig.want(ns, "fraud", 2)
    wait_for(
        "an analysis step half-way",
        lambda: (
            (s := rig.status(ns, "fraud")).get("currentStepIndex") == 1
            and s["analysis"]["metrics"][0]["stepPasses"] >= 1
        ),
    )

    rig.operator.kill()
    ledger.fault("operator SIGKILL in Progressing (waiting for analysis)")
    killed = rig.status(ns, "fraud")
    rig.measure(query, 0.5)
    rig.operator.start()
    status = rig.wait_phase(ns, "fraud", "Failed", timeout=90)

    assert killed["phase"] == "Progressing"
    passed_before = killed["analysis"]["metrics"][0]["successful"]
    assert 1 <= killed["analysis"]["metrics"][0]["stepPasses"] < 4
    metric = status["analysis"]["metrics"][0]
    assert (metric["verdict"], metric["failed"]) == ("FAIL", 1)
    assert metric["successful"] == passed_before
    assert status["failedVersions"] == ["fraud/2"]
    assert status["history"][-1]["reason"] == "AnalysisFailed"
    assert outcomes(status) == ["Initialized", "RolledBack"]
    states = [
        (storage("fraud", 1), None),
        (storage("fraud", 2), 50),
        (storage("fraud", 2), 0),
        (storage("fraud", 1), 0),
        (storage("fraud", 1), None),
    ]
    assert recorder.close() == states
    assert rig.isvc_writes(ns) == len(states)
    events = rig.events(ns, "fraud")
    assert events["AnalysisFailed"] == 1
    assert events["RolledBack"] == 1
    assert events["Promoting"] == events["RolloutPromoted"] == 0


def test_killed_mid_analysis_then_missing_metrics_never_promote(rig: Rig) -> None:
    """Given an analysis step half-way, when the operator is killed and the metric has no data
    once it is back, then it holds the canary (no evidence, no promotion) until the data is
    back and someone accepts the inconclusive result."""
    ns = rig.namespace("restart-analysis-missing")
    query = "restart_analysis_missing_quality"
    rig.measure(query, 0.999)
    recorder = rig.record(ns, "churn")
    rig.apply(ns, analysed("churn", query, count=3))
    rig.wait_phase(ns, "churn", "Succeeded")
    rig.want(ns, "churn", 2)
    wait_for(
        "an analysis step half-way",
        lambda: (
            (s := rig.status(ns, "churn")).get("currentStepIndex") == 1
            and s["analysis"]["metrics"][0]["stepPasses"] >= 1
        ),
    )

    rig.operator.kill()
    ledger.fault("operator SIGKILL in Progressing (waiting for analysis)")
    killed = rig.status(ns, "churn")
    rig.measure(query, None)
    rig.operator.start()
    held = rig.wait_phase(ns, "churn", "Paused", timeout=90)

    assert killed["phase"] == "Progressing"
    assert held["canaryWeight"] == 50
    assert held["analysis"]["metrics"][0]["verdict"] == "INCONCLUSIVE"
    assert rig.isvc(ns, "churn")["spec"]["predictor"]["canaryTrafficPercent"] == 50
    assert rig.events(ns, "churn")["Promoting"] == 0

    rig.measure(query, 0.999)
    rig.act(ns, "churn", "promote:1")
    status = rig.wait_phase(ns, "churn", "Succeeded", timeout=90)
    metric = status["analysis"]["metrics"][0]
    assert metric["verdict"] == "PASS"
    assert metric["successful"] >= 3
    assert outcomes(status) == ["Initialized", "Promoted"]
    states = [(storage("churn", 1), None), (storage("churn", 2), 50), (storage("churn", 2), None)]
    assert recorder.close() == states
    assert rig.isvc_writes(ns) == len(states)


def test_killed_between_the_weight_patch_and_the_status_write(rig: Rig) -> None:
    """Given a canary paused at 20%, when a promotion moves it to 60% and the operator is killed
    after the InferenceService patch and the events but before its status write, then the
    restarted operator neither patches 60% again nor skips the step, and posts nothing twice."""
    ns = rig.namespace("restart-held-weight")
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {}},
        {"setWeight": 60},
        {"pause": {"duration": "1s"}},
    ]
    recorder = stable_at_v1(rig, ns, "ranker", steps)
    rig.want(ns, "ranker", 2)
    rig.wait_phase(ns, "ranker", "Paused")
    rig.hold_status_writes(ns)
    rig.act(ns, "ranker", "promote:1")
    wait_for(
        "60% patched, its events posted, the status write hanging",
        lambda: (
            rig.isvc(ns, "ranker")["spec"]["predictor"].get("canaryTrafficPercent") == 60
            and rig.events(ns, "ranker")["TrafficWeightUpdated"] == 2
            and rig.status_write_held(ns)
        ),
    )

    rig.crash_with_status_write_held(ns, "Paused")
    unwritten = rig.status(ns, "ranker")
    status = rig.wait_phase(ns, "ranker", "Succeeded", timeout=90)

    assert (unwritten["phase"], unwritten["canaryWeight"]) == ("Paused", 20)
    assert "lastAction" not in unwritten
    assert status["lastAction"] == "promote:1"
    assert outcomes(status) == ["Initialized", "Promoted"]
    states = [
        (storage("ranker", 1), None),
        (storage("ranker", 2), 20),
        (storage("ranker", 2), 60),
        (storage("ranker", 2), None),
    ]
    wait_for("v2 alone", lambda: serves_alone(rig, ns, "ranker", 2))
    assert recorder.close() == states
    assert rig.isvc_writes(ns) == len(states)
    assert rig.events(ns, "ranker") == Counter(
        Initializing=1, Initialized=1, RolloutStarted=1, TrafficWeightUpdated=2, StepAdvanced=3,
        StepPromoted=1, RolloutPaused=2, RolloutResumed=2, Promoting=1, RolloutPromoted=1,
    )  # fmt: skip


class RecordedTwiceError(AssertionError):
    """An event or a registry write-back of a pass whose status write was lost, made again."""


def test_killed_between_the_promotion_and_its_status_write(rig: Rig) -> None:
    """Given a promotion KServe has just reported, when the operator is killed after it
    recorded the promotion (write-back, events) but before its status write, then the
    restarted operator records it once: one history entry, one event, one write-back."""
    ns = rig.namespace("restart-held-promotion")
    recorder = stable_at_v1(rig, ns, "eta", [{"setWeight": 50}, {"pause": {}}])
    rig.want(ns, "eta", 2)
    rig.wait_phase(ns, "eta", "Paused")
    rig.freeze_kserve()
    rig.act(ns, "eta", "promote-full:1")
    rig.wait_phase(ns, "eta", "Promoting")
    rig.hold_status_writes(ns)
    rig.thaw_kserve()
    wait_for(
        "the promotion recorded, the status write hanging",
        lambda: rig.events(ns, "eta")["RolloutPromoted"] == 1 and rig.status_write_held(ns),
    )

    rig.crash_with_status_write_held(ns, "Promoting")
    unwritten = rig.status(ns, "eta")
    status = rig.wait_phase(ns, "eta", "Succeeded")

    assert unwritten["phase"] == "Promoting"
    assert status["stable"]["storageUri"] == storage("eta", 2)
    assert outcomes(status) == ["Initialized", "Promoted"]
    states = [(storage("eta", 1), None), (storage("eta", 2), 50), (storage("eta", 2), None)]
    assert recorder.close() == states
    assert rig.isvc_writes(ns) == len(states)
    events = rig.events(ns, "eta")
    assert events - Counter(RolloutPromoted=events["RolloutPromoted"]) == Counter(
        Initializing=1, Initialized=1, RolloutStarted=1, TrafficWeightUpdated=1,
        StepAdvanced=1, RolloutPaused=1, Promoting=1,
    )  # fmt: skip
    write_backs = rig.write_backs(f"{ns}/eta")
    assert set(write_backs) == {("eta/1", "Initialized"), ("eta/2", "Promoted")}
    if events["RolloutPromoted"] != 1 or len(write_backs) != 2:
        raise RecordedTwiceError(
            f"RolloutPromoted posted {events['RolloutPromoted']} times; write-backs {write_backs}"
        )


def test_killed_between_the_restore_and_its_status_write_then_once_failed(rig: Rig) -> None:
    """Given an abort whose traffic KServe has just moved back, when the operator is killed
    after it put v1 back in the spec but before its status write, then the restarted operator
    neither restores twice nor skips the rollback's end: v2 is failed once. Killed again once
    Failed, it stays Failed and changes nothing."""
    ns = rig.namespace("restart-held-rollback")
    recorder = stable_at_v1(rig, ns, "pricing", [{"setWeight": 40}, {"pause": {}}])
    rig.want(ns, "pricing", 2)
    rig.wait_phase(ns, "pricing", "Paused")
    rig.freeze_kserve()
    rig.act(ns, "pricing", "abort:1")
    rig.wait_phase(ns, "pricing", "RollingBack")
    rig.hold_status_writes(ns)
    rig.thaw_kserve()
    wait_for(
        "v1 restored in the spec, the status write hanging",
        lambda: (
            rig.isvc(ns, "pricing")["spec"]["predictor"]["model"]["storageUri"]
            == storage("pricing", 1)
            and rig.status_write_held(ns)
        ),
    )

    rig.crash_with_status_write_held(ns, "RollingBack")
    unwritten = rig.status(ns, "pricing")
    rig.wait_phase(ns, "pricing", "Failed")
    wait_for("v1 alone", lambda: serves_alone(rig, ns, "pricing", 1))
    settled = wait_for(
        "the failed version refused",
        lambda: "failed a rollout before" in (s := rig.status(ns, "pricing"))["message"] and s,
    )
    seen = rig.passes_seen(ns)
    rig.crash_operator("Failed")
    wait_for("three passes after the restart", lambda: rig.passes_seen(ns) >= seen + 3)
    status = rig.status(ns, "pricing")

    assert unwritten["phase"] == "RollingBack"
    assert status == settled
    assert status["failedVersions"] == ["pricing/2"]
    assert outcomes(status) == ["Initialized", "Aborted"]
    states = [
        (storage("pricing", 1), None),
        (storage("pricing", 2), 40),
        (storage("pricing", 2), 0),
        (storage("pricing", 1), 0),
        (storage("pricing", 1), None),
    ]
    assert recorder.close() == states
    assert rig.isvc_writes(ns) == len(states)
    assert rig.events(ns, "pricing") == Counter(
        Initializing=1, Initialized=1, RolloutStarted=1, TrafficWeightUpdated=2,
        StepAdvanced=1, RolloutPaused=1, RolloutAborted=1, StableRestored=1, RolledBack=1,
        PreviouslyFailed=1,
    )  # fmt: skip
    assert rig.write_backs(f"{ns}/pricing") == [
        ("pricing/1", "Initialized"),
        ("pricing/2", "Aborted"),
    ]
