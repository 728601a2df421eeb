"""The mission, end to end, with every real part: ``modelrollout sandbox up`` and git commits.

One sandbox for the module (kube-api emulator, MLflow, the local KServe data plane with real
model servers, Prometheus, the operator, Locust), driven as a user drives it
(:class:`modelrollout.sandbox.scenario.Sandbox`): commit a manifest naming an MLflow version,
send load, look. Each scenario has its own namespace, InferenceService and registered model
(MLflow's ``champion`` alias is per registered model). Given v1 (the baseline) stable:

- in parallel: a better model is promoted; a model failing 30% of requests, one 150 ms slower
  and one whose predictions are shifted by +80 (the drift metric) are rolled back; a canary
  that gets no traffic is never promoted (it pauses with InconclusiveAnalysis at its step
  weight);
- then, one at a time (they disturb the whole sandbox): Prometheus killed while a good canary
  is in analysis -> never promoted, rolled back by ``consecutiveErrorLimit``; the operator
  killed and restarted while two canaries run (a good v3 in the "good" namespace, a v3
  failing 30% of requests in the "errors" one) -> the same outcomes as without the kill,
  with no repeated step, event or history entry.

Model servers start in waves of at most three (2 cores), and a namespace gets its load once
its canary serves. The module takes 5-7 minutes here, most of it model servers starting
(each rollback starts one more: KServe makes a new revision when the spec goes back).

Each asserts the InferenceService spec and status, the ModelRollout status and conditions,
the events, and the MLflow alias and ``modelrollout.*`` tags.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import planted
from modelrollout.sandbox import models
from modelrollout.sandbox.models import Candidate, Registered
from modelrollout.sandbox.scenario import METRICS, Sandbox, canary_spec
from modelrollout.sandbox.up import down, start_service, stop_service, up
from processes import free_base_port

pytestmark = pytest.mark.e2e

ISVC = "diabetes"
ALIAS = "champion"
#: Requests a second per loaded InferenceService: what 2 cores sustain next to ~6
#: InferenceServices (two model servers each while a canary runs). The good canary needs
#: the most (300 canary requests at 25% before the sequential judge passes it).
RPS = {"good": 35.0, "errors": 12.0, "latency": 12.0, "drift": 20.0}
#: The loaded scenarios' inconclusiveLimit: their load starts only once their canary
#: serves, so the first few measurements may find no data yet. The no-traffic scenario
#: keeps canary_spec's default (3).
INCONCLUSIVE_LIMIT = 8
#: What to start in each wave, (namespace, version): at most three model servers start at
#: once, the next wave when they serve. Every server at once on 2 cores can outlast the
#: data plane's 60 s start timeout, and its restarts then come all together again.
WAVES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("good", 1), ("errors", 1), ("drift", 1)),
    (("latency", 1), ("idle", 1)),
    (("good", 2), ("errors", 2), ("drift", 2)),
    (("latency", 2), ("idle", 2), ("prom", 1)),
)
#: Each parallel scenario's candidates after the baseline; the third versions of "good" and
#: "errors" are for the operator-restart test, which runs later in the same namespaces.
PARALLEL: dict[str, list[Candidate]] = {
    "good": [models.BETTER, models.BETTER],
    "errors": [models.ERRORS, models.ERRORS],
    "latency": [models.SLOW],
    "drift": [models.SKEWED],
    "idle": [models.BETTER],
}
#: The Secret with each namespace's planted MLflow and Prometheus tokens (tests/planted.py).
CREDENTIALS = "sandbox-credentials"
#: The Prometheus test's namespace.
PROM = "prom"
PROM_CANDIDATES = [models.BASELINE, models.BETTER]
PROM_RPS = 40.0


# ---------------------------------------------------------------- helpers


def model_name(namespace: str) -> str:
    return f"e2e-{namespace}"


def path_of(namespace: str) -> str:
    return f"{namespace}/{ISVC}.yaml"


def summary(status: dict[str, Any]) -> str:
    """The parts of a status that say where a rollout stands, in one line."""
    metrics = (status.get("analysis") or {}).get("metrics", [])
    return (
        f"phase={status.get('phase')} weight={status.get('canaryWeight')} "
        f"step={status.get('currentStepIndex')} "
        f"stable={(status.get('stable') or {}).get('version')} "
        f"canary={(status.get('canary') or {}).get('version')} "
        f"metrics={[(m['name'], m.get('verdict'), m.get('count')) for m in metrics]} "
        f"message={status.get('message')!r}"
    )


def operator_log_tail(sandbox: Sandbox, lines: int = 40) -> str:
    try:
        text = (sandbox.run_dir / "operator.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no operator.log)"
    return "\n".join(text.splitlines()[-lines:])


def await_status(
    sandbox: Sandbox,
    namespace: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """Poll the rollout's status until ``done``; on timeout fail with the last status seen
    and the tail of the operator's log."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while True:
        status = sandbox.status(namespace, ISVC)
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{namespace}: not within {timeout:.0f} s: {what}\n"
                f"last status: {summary(status)}\n"
                f"operator.log (tail):\n{operator_log_tail(sandbox)}"
            )
        time.sleep(0.5)


def at_rest_with(version: str) -> Callable[[dict[str, Any]], bool]:
    def done(status: dict[str, Any]) -> bool:
        stable = (status.get("stable") or {}).get("version")
        return (
            stable == version
            and "canary" not in status
            and status.get("phase")
            in (
                "Succeeded",
                "Failed",
            )
        )

    return done


def serving_canary(
    version: str, weight: int = 25, *, measured: bool = True
) -> Callable[[dict[str, Any]], bool]:
    """The canary serves ``weight``% (and, if ``measured``, was measured with data)."""

    def done(status: dict[str, Any]) -> bool:
        with_data = not measured or any(
            m.get("count", 0) > 0 and "no data" not in (m.get("message") or "")
            for m in (status.get("analysis") or {}).get("metrics", [])
        )
        return (
            (status.get("canary") or {}).get("version") == version
            and status.get("canaryWeight") == weight
            and condition(status, "Ready") == ("True", "Serving")
            and with_data
        )

    return done


def started_with(version: str) -> Callable[[dict[str, Any]], bool]:
    """The canary ``version`` serves its step weight, or its rollout already ended."""

    def done(status: dict[str, Any]) -> bool:
        if any(h["model"]["version"] == version for h in status.get("history", [])):
            return True
        return (status.get("canary") or {}).get("version") == version and condition(
            status, "Ready"
        ) == ("True", "Serving")

    return done


def condition(status: dict[str, Any], kind: str) -> tuple[str, str] | None:
    found = next((c for c in status.get("conditions", []) if c["type"] == kind), None)
    return (found["status"], found["reason"]) if found else None


def metric(status: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in status["analysis"]["metrics"] if m["name"] == name)
    return found


def events_with(
    sandbox: Sandbox, namespace: str, last: str, before: Counter[str] | None = None
) -> list[dict[str, Any]]:
    """The rollout's events once ``last`` is among them (new since ``before``, if given): kopf
    posts events in the background, so the status may show an outcome a moment before its
    events are there."""
    deadline = time.monotonic() + 20.0
    while True:
        found = sandbox.events(namespace, ISVC)
        new = Counter(reasons(found)) - (before or Counter())
        if new[last] or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def reasons(events: list[dict[str, Any]]) -> list[str]:
    return [e["reason"] for e in events]


def in_order(found: list[str], expected: list[str]) -> bool:
    """Whether ``expected`` is a subsequence of ``found``."""
    rest = iter(found)
    return all(any(item == wanted for item in rest) for wanted in expected)


def assert_serves_stable_only(sandbox: Sandbox, namespace: str, status: dict[str, Any]) -> None:
    """The InferenceService spec names the stable model with no canary, and its status
    sends 100% to one ready revision."""
    isvc = sandbox.inference_service(namespace, ISVC)
    assert isvc is not None
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == status["stable"]["storageUri"]
    assert not predictor.get("canaryTrafficPercent")
    components = isvc["status"]["components"]["predictor"]
    traffic = [(t["revisionName"], t["percent"]) for t in components["traffic"]]
    assert traffic == [(components["latestReadyRevision"], 100)]
    isvc_conditions = {c["type"]: c["status"] for c in isvc["status"]["conditions"]}
    assert isvc_conditions["Ready"] == "True"


def mlflow_client(sandbox: Sandbox) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(sandbox.urls["mlflow"])


def champion(sandbox: Sandbox, name: str) -> str:
    version: str = mlflow_client(sandbox).get_model_version_by_alias(name, ALIAS).version
    return version


def rollout_tags(sandbox: Sandbox, name: str, version: str) -> dict[str, str]:
    tags = mlflow_client(sandbox).get_model_version(name, version).tags
    return {k: v for k, v in tags.items() if k.startswith("modelrollout.")}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The whole sandbox on a free port range, always brought down at the end."""
    run_dir = tmp_path_factory.mktemp("e2e-sandbox") / "run"
    said: list[str] = []
    try:
        up(run_dir, free_base_port(), out=said.append)
        found = Sandbox(run_dir)
        try:
            yield found
        finally:
            # What the operator wrote, for the planted-secrets scan (tests/planted.py).
            planted.dump_api(found.urls["kube-api"], run_dir.parent / "objects")
            found.close()
    finally:
        down(run_dir, out=said.append)


@dataclass(frozen=True)
class Parallel:
    sandbox: Sandbox
    registered: dict[str, list[Registered]]
    #: Per namespace, the commit of each of its manifests.
    commits: dict[str, list[str]]
    #: Every commit pushed, oldest first (all namespaces share one repository).
    log: list[str]

    def recorded_commit_ok(self, ns: str, version: int, recorded: str) -> bool:
        """The operator records the branch's head when it fetched, which may be a later
        commit (of another namespace) than the one that changed this manifest."""
        made = self.commits[ns][version - 1]
        return recorded in self.log and self.log.index(recorded) >= self.log.index(made)


@pytest.fixture(scope="module")
def parallel(sandbox: Sandbox) -> Parallel:
    """Every scenario's models registered; v1 stable everywhere and the parallel scenarios'
    candidates committed, under load, in waves (see WAVES)."""
    registered = {
        ns: models.register(sandbox.urls["mlflow"], model_name(ns), [models.BASELINE, *cands])
        for ns, cands in PARALLEL.items()
    }
    registered[PROM] = models.register(sandbox.urls["mlflow"], model_name(PROM), PROM_CANDIDATES)
    commits: dict[str, list[str]] = {ns: [] for ns in registered}
    log: list[str] = []
    loaded: dict[tuple[str, str], float] = {}
    for wave in WAVES:
        for ns, version in wave:
            uri = registered[ns][version - 1].uri
            commits[ns].append(sandbox.commit_manifest(path_of(ns), uri, f"{ns} v{version}"))
            log.append(commits[ns][-1])
            if version == 1:
                sandbox.namespace(ns)
                sandbox.credentials(
                    ns,
                    CREDENTIALS,
                    mlflow_token=planted.MLFLOW_TOKEN,
                    prometheus_token=planted.PROMETHEUS_TOKEN,
                )
                sandbox.apply_templates(ns, secret=CREDENTIALS)
                limit = INCONCLUSIVE_LIMIT if ns in RPS else 3
                spec = canary_spec(
                    sandbox.state["gitUrl"],
                    path_of(ns),
                    ISVC,
                    inconclusive_limit=limit,
                    registry_secret=CREDENTIALS,
                )
                sandbox.apply_rollout(ns, ISVC, spec)
        # Load goes to a namespace once its canary serves: model servers start faster
        # without it, and nothing needs it before.
        waiting = dict(wave)
        deadline = time.monotonic() + 150
        while waiting:
            for ns, version in list(waiting.items()):
                status = sandbox.status(ns, ISVC)
                if version == 1 and at_rest_with("1")(status):
                    del waiting[ns]
                elif version == 2 and started_with("2")(status):
                    del waiting[ns]
                    loaded[(ns, ISVC)] = RPS.get(ns, 0.0)
                    sandbox.load({key: rps for key, rps in loaded.items() if rps})
            if time.monotonic() > deadline:
                lines = [f"{ns}: {summary(sandbox.status(ns, ISVC))}" for ns in waiting]
                raise AssertionError(
                    f"not within 150 s: {waiting} (v1 stable, or v2 serving)\n"
                    + "\n".join(lines)
                    + f"\noperator.log (tail):\n{operator_log_tail(sandbox)}"
                )
            time.sleep(0.5)
    return Parallel(sandbox, registered, commits, log)


# ---------------------------------------------------------------- the parallel scenarios


def test_a_better_model_is_promoted(parallel: Parallel) -> None:
    sandbox, ns = parallel.sandbox, "good"
    name = model_name(ns)

    status = await_status(sandbox, ns, at_rest_with("2"), 240, "v2 promoted")

    assert status["phase"] == "Succeeded"
    assert status["canaryWeight"] == 0
    assert parallel.recorded_commit_ok(ns, 2, status["stable"]["gitCommit"])
    assert [(h["model"]["version"], h["outcome"]) for h in status["history"]] == [
        ("1", "Initialized"),
        ("2", "Promoted"),
    ]
    assert status["history"][-1]["reason"] == "RolloutPromoted"
    assert status.get("failedVersions", []) == []
    assert status["analysis"]["phase"] != "Failed"
    assert {m["name"]: m["verdict"] for m in status["analysis"]["metrics"]} == {
        "errors": "PASS",
        "latency": "PASS",
        "drift": "PASS",
    }
    assert condition(status, "Ready") == ("True", "Serving")
    assert condition(status, "Progressing") == ("False", "RolloutCompleted")
    assert condition(status, "Healthy") == ("True", "AnalysisPassing")
    assert condition(status, "Gated") == ("True", "GatesPassed")

    found = events_with(sandbox, ns, "RolloutPromoted")
    events = reasons(found)
    assert in_order(
        events,
        ["Initialized", "RolloutStarted", "TrafficWeightUpdated", "StepAdvanced", "Promoting",
         "RolloutPromoted"],
    ), events  # fmt: skip
    counts = Counter(events)
    assert counts["RolloutStarted"] == counts["RolloutPromoted"] == 1, events
    assert not {"AnalysisFailed", "AnalysisError", "RolledBack"} & set(events), events
    weights = [e["message"] for e in found if e["reason"] == "TrafficWeightUpdated"]
    assert weights == ["canary weight 0% -> 25%", "canary weight 25% -> 50%"]

    assert_serves_stable_only(sandbox, ns, status)
    served = sandbox.served(ns)
    assert served.get("diabetes-predictor-00002", 0) > 0

    assert champion(sandbox, name) == "2"
    tags = rollout_tags(sandbox, name, "2")
    assert tags["modelrollout.verdict"] == "Promoted"
    # The planted MLflow and Prometheus tokens were in play: the operator read their Secret.
    with urllib.request.urlopen(sandbox.urls["kube-api"] + "/_emulator/audit", timeout=30) as got:
        audit = json.loads(got.read())["items"]
    assert planted.secret_reads(audit, ns, CREDENTIALS) > 0
    assert tags["modelrollout.rollout"] == f"{ns}/{ISVC}"
    assert tags["modelrollout.commit"] == status["history"][-1]["model"]["gitCommit"]
    assert parallel.recorded_commit_ok(ns, 2, tags["modelrollout.commit"])
    assert tags["modelrollout.time"]
    assert "modelrollout.rolled_back" not in tags
    assert rollout_tags(sandbox, name, "1")["modelrollout.verdict"] == "Initialized"


def assert_rolled_back(
    parallel: Parallel, ns: str, failing: str, evidence: tuple[str, ...]
) -> dict[str, Any]:
    """The common outcome of a regression caught by metric ``failing``."""
    sandbox, name = parallel.sandbox, model_name(ns)
    # Settled: the pass after the rollback refuses the failed version (Gated, PreviouslyFailed).
    status = await_status(
        sandbox,
        ns,
        lambda s: at_rest_with("1")(s) and condition(s, "Gated") == ("False", "PreviouslyFailed"),
        240,
        f"v2 rolled back by {failing}, and refused since",
    )

    assert status["phase"] == "Failed"
    assert status["canaryWeight"] == 0
    assert status["failedVersions"] == [f"{name}/2"]
    assert [(h["model"]["version"], h["outcome"]) for h in status["history"]] == [
        ("1", "Initialized"),
        ("2", "RolledBack"),
    ]
    last = status["history"][-1]
    assert last["reason"] == "AnalysisFailed"
    assert f"metric {failing!r} failed 1 time(s), more than failureLimit 0" in last["message"]
    assert status["analysis"]["phase"] == "Failed"
    judged = metric(status, failing)
    assert judged["verdict"] == "FAIL"
    assert judged["failed"] == 1
    assert set(evidence) <= set(judged["evidence"]), judged["evidence"]
    others = [m for m in status["analysis"]["metrics"] if m["name"] != failing]
    assert all(m["verdict"] != "FAIL" for m in others), others
    # The settled state: the version is remembered as failed and refused until a retry.
    assert "failed a rollout before" in status["message"]
    assert condition(status, "Ready") == ("True", "Serving")
    assert condition(status, "Healthy") == ("False", "AnalysisFailed")
    assert condition(status, "Gated") == ("False", "PreviouslyFailed")
    assert condition(status, "Progressing") == ("False", "PreviouslyFailed")

    found = events_with(sandbox, ns, "RolledBack")
    events = reasons(found)
    assert in_order(
        events,
        ["Initialized", "RolloutStarted", "TrafficWeightUpdated", "AnalysisFailed",
         "StableRestored", "RolledBack"],
    ), events  # fmt: skip
    counts = Counter(events)
    assert counts["RolloutStarted"] == counts["AnalysisFailed"] == counts["RolledBack"] == 1
    assert not {"Promoting", "RolloutPromoted", "StepAdvanced"} & set(events), events
    weights = [e["message"] for e in found if e["reason"] == "TrafficWeightUpdated"]
    assert weights == ["canary weight 0% -> 25%", "canary weight 25% -> 0%"]
    warning = next(e for e in found if e["reason"] == "RolledBack")
    assert warning["type"] == "Warning"
    assert f"metric {failing!r}" in warning["message"]

    assert_serves_stable_only(sandbox, ns, status)

    assert champion(sandbox, name) == "1"
    tags = rollout_tags(sandbox, name, "2")
    assert tags["modelrollout.verdict"] == "RolledBack"
    assert tags["modelrollout.rolled_back"].startswith(f"AnalysisFailed: metric {failing!r}")
    assert tags["modelrollout.rollout"] == f"{ns}/{ISVC}"
    assert tags["modelrollout.commit"] == status["history"][-1]["model"]["gitCommit"]
    assert parallel.recorded_commit_ok(ns, 2, tags["modelrollout.commit"])
    return status


def test_an_error_regression_is_rolled_back(parallel: Parallel) -> None:
    status = assert_rolled_back(
        parallel, "errors", "errors", ("canaryTotal", "canaryBad", "stableTotal", "eValueHarm")
    )
    evidence = metric(status, "errors")["evidence"]
    assert float(evidence["canaryBad"]) > 0
    assert float(evidence["stableBad"]) == 0


def test_a_latency_regression_is_rolled_back(parallel: Parallel) -> None:
    status = assert_rolled_back(parallel, "latency", "latency", ("query.buckets",))
    assert "slower than" in metric(status, "latency")["message"]


def test_prediction_drift_is_rolled_back(parallel: Parallel) -> None:
    status = assert_rolled_back(parallel, "drift", "drift", ("query.buckets",))
    judged = metric(status, "drift")
    assert judged["value"] > METRICS["drift"]["drift"]["max"]
    assert "PSI" in judged["message"]
    # The model answers every request well: only the drift metric saw the shift.
    assert metric(status, "errors")["verdict"] != "FAIL"


def test_a_canary_with_no_traffic_is_never_promoted(parallel: Parallel) -> None:
    """No load: every measurement is "no data", which counts as inconclusive; past
    inconclusiveLimit the rollout pauses for a person at its step weight."""
    sandbox, ns = parallel.sandbox, "idle"
    name = model_name(ns)

    status = await_status(
        sandbox, ns, lambda s: s.get("phase") == "Paused", 150, "paused for no data"
    )

    assert status["canary"]["version"] == "2"
    assert status["stable"]["version"] == "1"
    assert status["canaryWeight"] == 25
    assert status["currentStepIndex"] == 0
    assert [h["outcome"] for h in status["history"]] == ["Initialized"]
    assert status["analysis"]["phase"] == "Inconclusive"
    for judged in status["analysis"]["metrics"]:
        assert judged["verdict"] == "INCONCLUSIVE"
        assert judged["successful"] == 0
        assert "no data for the canary" in judged["message"]
    assert "more than inconclusiveLimit 3" in status["message"]
    assert condition(status, "Progressing") == ("True", "InconclusiveAnalysis")
    assert condition(status, "Healthy") == ("False", "InconclusiveAnalysis")
    assert condition(status, "Ready") == ("True", "Serving")

    found = events_with(sandbox, ns, "InconclusiveAnalysis")
    events = reasons(found)
    assert in_order(events, ["RolloutStarted", "TrafficWeightUpdated", "InconclusiveAnalysis"])
    assert not {"StepAdvanced", "Promoting", "RolloutPromoted"} & set(events), events
    weights = [e["message"] for e in found if e["reason"] == "TrafficWeightUpdated"]
    assert weights == ["canary weight 0% -> 25%"]

    isvc = sandbox.inference_service(ns, ISVC)
    assert isvc is not None
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == status["canary"]["storageUri"]
    assert sum(sandbox.served(ns).values()) == 0

    assert champion(sandbox, name) == "1"
    assert rollout_tags(sandbox, name, "2") == {}


# ---------------------------------------------------------------- one at a time


def test_prometheus_killed_mid_analysis_rolls_back_on_the_error_limit(
    parallel: Parallel,
) -> None:
    sandbox, ns = parallel.sandbox, PROM
    name = model_name(ns)
    await_status(sandbox, ns, at_rest_with("1"), 60, "v1 stable")
    sandbox.load({(ns, ISVC): PROM_RPS})

    # Given a good canary in analysis at 25%
    commit = sandbox.commit_manifest(path_of(ns), parallel.registered[ns][1].uri, "prom v2")
    await_status(sandbox, ns, serving_canary("2"), 150, "v2 in analysis at 25%")
    # When Prometheus dies
    stop_service(sandbox.run_dir, "prometheus", signal.SIGKILL)
    try:
        status = await_status(sandbox, ns, at_rest_with("1"), 120, "v2 rolled back")
    finally:
        start_service(sandbox.run_dir, "prometheus")

    # Then the canary is never promoted: the error limit rolls it back
    assert status["phase"] == "Failed"
    assert status["failedVersions"] == [f"{name}/2"]
    assert [(h["model"]["version"], h["outcome"]) for h in status["history"]] == [
        ("1", "Initialized"),
        ("2", "RolledBack"),
    ]
    last = status["history"][-1]
    assert last["reason"] == "AnalysisError"
    assert "more than consecutiveErrorLimit 4" in last["message"]
    assert status["analysis"]["phase"] == "Error"
    errored = [m for m in status["analysis"]["metrics"] if m["consecutiveErrors"] > 4]
    assert errored, status["analysis"]
    assert all(m["verdict"] == "ERROR" for m in errored)
    assert condition(status, "Healthy") == ("False", "AnalysisError")
    events = events_with(sandbox, ns, "RolledBack")
    assert in_order(
        reasons(events), ["RolloutStarted", "AnalysisError", "StableRestored", "RolledBack"]
    ), reasons(events)
    assert not {"Promoting", "RolloutPromoted"} & set(reasons(events))
    weights = [e["message"] for e in events if e["reason"] == "TrafficWeightUpdated"]
    assert "canary weight 25% -> 50%" not in weights
    assert_serves_stable_only(sandbox, ns, status)
    assert champion(sandbox, name) == "1"
    tags = rollout_tags(sandbox, name, "2")
    assert tags["modelrollout.verdict"] == "RolledBack"
    assert tags["modelrollout.rolled_back"].startswith("AnalysisError: ")
    assert tags["modelrollout.commit"] == commit


def kill_operator_once_serving(sandbox: Sandbox, canaries: dict[str, str]) -> None:
    """SIGKILL the operator once every canary (namespace: version) serves 25%; start it
    again after each has served more requests with no operator watching."""
    revisions = {}
    for ns, version in canaries.items():
        serving = serving_canary(version, measured=False)
        await_status(sandbox, ns, serving, 150, f"v{version} serving 25%")
    for ns in canaries:
        isvc = sandbox.inference_service(ns, ISVC)
        assert isvc is not None
        revision = isvc["status"]["components"]["predictor"]["latestCreatedRevision"]
        revisions[ns] = (revision, sandbox.served(ns).get(revision, 0.0))
    stop_service(sandbox.run_dir, "operator", signal.SIGKILL)
    deadline = time.monotonic() + 60
    for ns, (revision, before) in revisions.items():
        while sandbox.served(ns).get(revision, 0.0) < before + 5:
            assert time.monotonic() < deadline, f"{ns}: the canary served nothing meanwhile"
            time.sleep(0.5)
    start_service(sandbox.run_dir, "operator")


def test_an_operator_killed_mid_rollout_reaches_the_same_outcome(parallel: Parallel) -> None:
    """Two rollouts at once in the namespaces of the good and the error scenarios (both at
    rest by now): a good v3 and a v3 failing 30% of requests; one kill, one restart."""
    sandbox = parallel.sandbox
    good_ns, bad_ns = "good", "errors"
    history, stable = {}, {}
    for ns in (good_ns, bad_ns):
        status = await_status(sandbox, ns, lambda s: "canary" not in s, 120, "at rest")
        history[ns], stable[ns] = len(status["history"]), status["stable"]["version"]
    assert stable == {good_ns: "2", bad_ns: "1"}
    # The error canary gets little traffic: it is judged (50 requests) well after it serves.
    sandbox.load({(good_ns, ISVC): 40.0, (bad_ns, ISVC): 6.0})
    before = {ns: Counter(reasons(sandbox.events(ns, ISVC))) for ns in (good_ns, bad_ns)}

    # Given both v3 canaries in their first step, when the operator is killed and restarted
    good_uri, bad_uri = (parallel.registered[ns][2].uri for ns in (good_ns, bad_ns))
    good = sandbox.commit_manifest(path_of(good_ns), good_uri, "good v3")
    bad = sandbox.commit_manifest(path_of(bad_ns), bad_uri, "errors v3")
    kill_operator_once_serving(sandbox, {good_ns: "3", bad_ns: "3"})

    # Then the good v3 is promoted, once
    status = await_status(sandbox, good_ns, at_rest_with("3"), 240, "v3 promoted")
    name = model_name(good_ns)
    assert status["phase"] == "Succeeded"
    outcomes = [(h["model"]["version"], h["outcome"]) for h in status["history"]]
    assert outcomes[history[good_ns] :] == [("3", "Promoted")]
    found = events_with(sandbox, good_ns, "RolloutPromoted", before[good_ns])
    new = Counter(reasons(found)) - before[good_ns]
    assert new["RolloutStarted"] == new["Promoting"] == new["RolloutPromoted"] == 1, new
    assert new["TrafficWeightUpdated"] == 2, new
    assert not new["AnalysisFailed"] + new["AnalysisError"] + new["RolledBack"], new
    assert_serves_stable_only(sandbox, good_ns, status)
    assert champion(sandbox, name) == "3"
    tags = rollout_tags(sandbox, name, "3")
    assert tags["modelrollout.verdict"] == "Promoted"
    assert tags["modelrollout.commit"] in (good, bad)

    # and the bad v3 is rolled back, once, its stable v1 serving again
    status = await_status(
        sandbox,
        bad_ns,
        lambda s: at_rest_with("1")(s) and f"{model_name(bad_ns)}/3" in s["failedVersions"],
        240,
        "v3 rolled back",
    )
    name = model_name(bad_ns)
    assert status["phase"] == "Failed"
    outcomes = [(h["model"]["version"], h["outcome"]) for h in status["history"]]
    assert outcomes[history[bad_ns] :] == [("3", "RolledBack")]
    assert status["history"][-1]["reason"] == "AnalysisFailed"
    found = events_with(sandbox, bad_ns, "RolledBack", before[bad_ns])
    new = Counter(reasons(found)) - before[bad_ns]
    assert new["RolloutStarted"] == new["AnalysisFailed"] == new["RolledBack"] == 1, new
    assert not new["Promoting"] + new["RolloutPromoted"], new
    assert_serves_stable_only(sandbox, bad_ns, status)
    assert champion(sandbox, name) == "1"
    tags = rollout_tags(sandbox, name, "3")
    assert (tags["modelrollout.verdict"], tags["modelrollout.commit"]) == ("RolledBack", bad)
    assert tags["modelrollout.rolled_back"].startswith("AnalysisFailed: metric 'errors'")
