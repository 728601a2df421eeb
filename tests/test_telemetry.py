"""The operator's own telemetry (modelrollout.telemetry): which series a pass produces, the timed
git and registry ports, readiness, the /metrics, /healthz and /readyz server, and, end to end
(marker e2e), a real operator driving a rollout to Succeeded and scraped over HTTP.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from modelrollout import api
from modelrollout.api import GitSource as GitSourceSpec
from modelrollout.api import ModelVersionRef, RegistryGates
from modelrollout.errors import RegistryError, SourceError
from modelrollout.gitsource.base import ManifestRevision
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from modelrollout.telemetry import (
    Health,
    Telemetry,
    TelemetryServer,
    TimedGitSource,
    TimedRegistry,
    parse_address,
)
from processes import Kubectl, free_base_port, kserve_controller, operator, running, wait_for

ROLLOUT = {"namespace": "shop", "name": "fraud"}
CHECKED_AT = "2030-01-01T00:00:00Z"


def metric_status(verdict: str, value: float, at: str, **evidence: str) -> dict[str, Any]:
    return {"name": "errors", "verdict": verdict, "value": value, "measuredAt": at,
            "evidence": evidence}  # fmt: skip


def status(phase: str, weight: int = 0, *metrics: dict[str, Any], history: int = 0) -> dict:
    entries = [
        {"model": {"uri": f"models:/fraud/{n}", "storageUri": f"s3://m/{n}"},
         "outcome": "Promoted", "reason": "RolloutPromoted", "finishedAt": f"2030-01-0{n + 1}"}
        for n in range(history)
    ]  # fmt: skip
    return {"phase": phase, "canaryWeight": weight, "analysis": {"metrics": list(metrics)},
            "history": entries}  # fmt: skip


def value(telemetry: Telemetry, series: str, /, **labels: str) -> float | None:
    return telemetry.registry.get_sample_value(series, labels)


# ---------------------------------------------------------------- what a pass records


def test_phases_are_counted_per_rollout_and_the_weight_follows_the_status() -> None:
    """Given two rollouts, when passes move one from Progressing to Paused, then the phase
    counts move with it and the weight is the status's."""
    telemetry = Telemetry()
    telemetry.record_pass("shop", "fraud", {}, status("Progressing", 20), 0.01)
    telemetry.record_pass("shop", "churn", {}, status("Progressing", 10), 0.01)
    assert value(telemetry, "modelrollout_rollouts", phase="Progressing") == 2

    telemetry.record_pass("shop", "fraud", status("Progressing", 20), status("Paused", 50), 0.01)

    assert value(telemetry, "modelrollout_rollouts", phase="Progressing") == 1
    assert value(telemetry, "modelrollout_rollouts", phase="Paused") == 1
    assert value(telemetry, "modelrollout_rollouts", phase="Failed") == 0
    assert value(telemetry, "modelrollout_canary_weight", **ROLLOUT) == 50
    assert value(telemetry, "modelrollout_rollout_phase", **ROLLOUT, phase="Paused") == 1
    assert value(telemetry, "modelrollout_rollout_phase", **ROLLOUT, phase="Progressing") == 0


def test_a_check_is_counted_once_with_its_value_and_e_values() -> None:
    """Given a new check in the status, then its verdict counts once, its value and e-values
    are exported; a pass that carries the same check over counts nothing more."""
    telemetry = Telemetry()
    checked = metric_status("PASS", 1.05, CHECKED_AT, eValueHarm="0.25", eValueWithin="21.5",
                            ratio="n/a")  # fmt: skip
    after = status("Progressing", 20, checked)

    telemetry.record_pass("shop", "fraud", status("Progressing", 20), after, 0.01)
    telemetry.record_pass("shop", "fraud", after, after, 0.01)

    labels = {**ROLLOUT, "metric": "errors"}
    assert value(telemetry, "modelrollout_analysis_verdicts_total", **labels, verdict="PASS") == 1
    assert value(telemetry, "modelrollout_analysis_value", **labels) == 1.05
    evidence = "modelrollout_analysis_evidence"
    assert value(telemetry, evidence, **labels, evidence="e_value_harm") == 0.25
    assert value(telemetry, evidence, **labels, evidence="e_value_within") == 21.5
    assert value(telemetry, evidence, **labels, evidence="ratio") is None

    again = status("Progressing", 20, metric_status("FAIL", 3.0, "2030-01-01T00:00:10Z"))
    telemetry.record_pass("shop", "fraud", after, again, 0.01)
    assert value(telemetry, "modelrollout_analysis_verdicts_total", **labels, verdict="FAIL") == 1
    assert value(telemetry, "modelrollout_analysis_value", **labels) == 3.0


def test_only_history_entries_new_in_the_pass_count_as_outcomes() -> None:
    """Given a status that already has a promotion (a restarted operator), when a pass adds a
    second, then one outcome is counted."""
    telemetry = Telemetry()
    labels = {**ROLLOUT, "outcome": "Promoted", "reason": "RolloutPromoted"}
    telemetry.record_pass("shop", "fraud", status("Succeeded", history=1),
                          status("Succeeded", history=1), 0.01)  # fmt: skip
    assert value(telemetry, "modelrollout_rollout_outcomes_total", **labels) is None

    telemetry.record_pass("shop", "fraud", status("Succeeded", history=1),
                          status("Succeeded", history=2), 0.01)  # fmt: skip
    assert value(telemetry, "modelrollout_rollout_outcomes_total", **labels) == 1


def test_errors_and_durations_of_passes() -> None:
    """Every pass, failed or not, is one observation of the decision histogram; failures count
    by kind."""
    telemetry = Telemetry()
    telemetry.record_pass("shop", "fraud", {}, status("Progressing"), 0.02)
    telemetry.record_error("shop", "fraud", "action", 0.3)

    assert value(telemetry, "modelrollout_decision_seconds_count") == 2
    assert value(telemetry, "modelrollout_decision_seconds_sum") == pytest.approx(0.32)
    assert value(telemetry, "modelrollout_decision_seconds_bucket", le="0.025") == 1
    assert value(telemetry, "modelrollout_reconcile_errors_total", **ROLLOUT, kind="action") == 1


def test_a_deleted_rollout_leaves_no_series_and_no_phase_count() -> None:
    """Given two rollouts with series, when one is forgotten, then none of its series remain
    and the other's are untouched."""
    telemetry = Telemetry()
    checked = status("Progressing", 30, metric_status("PASS", 1.0, CHECKED_AT, eValueHarm="1"),
                     history=1)  # fmt: skip
    telemetry.record_pass("shop", "fraud", {}, checked, 0.01)
    telemetry.record_error("shop", "fraud", "unexpected", 0.01)
    telemetry.record_pass("shop", "churn", {}, status("Progressing", 10), 0.01)

    telemetry.forget("shop", "fraud")

    text = telemetry.exposition().decode()
    assert 'name="fraud"' not in text
    assert 'name="churn"' in text
    assert value(telemetry, "modelrollout_rollouts", phase="Progressing") == 1


def test_an_unreadable_status_records_only_the_duration() -> None:
    telemetry = Telemetry()
    telemetry.record_pass("shop", "fraud", {}, {"phase": "Sideways"}, 0.01)
    assert value(telemetry, "modelrollout_decision_seconds_count") == 1
    assert value(telemetry, "modelrollout_canary_weight", **ROLLOUT) is None


def test_every_series_name_is_prefixed_and_labels_stay_bounded() -> None:
    """The names the dashboard may use, and no label that could carry a version or URI."""
    telemetry = Telemetry()
    ours = {n for n in telemetry.series_names() if not n.startswith("process_")}
    assert all(n.startswith("modelrollout_") for n in ours)
    assert {"modelrollout_canary_weight", "modelrollout_analysis_verdicts_total",
            "modelrollout_decision_seconds_bucket", "modelrollout_git_fetch_seconds_bucket",
            "modelrollout_registry_request_seconds_count"} <= ours  # fmt: skip
    allowed = {"namespace", "name", "metric", "verdict", "phase", "evidence", "outcome",
               "reason", "kind", "result", "operation", "le"}  # fmt: skip
    telemetry.record_pass("shop", "fraud", {}, status("Progressing", 20,
                          metric_status("PASS", 1.0, CHECKED_AT), history=1), 0.01)  # fmt: skip
    families = text_string_to_metric_families(telemetry.exposition().decode())
    used = {label for f in families for s in f.samples for label in s.labels}
    assert used <= allowed


# ---------------------------------------------------------------- timed ports


class Registry:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    async def resolve(self, uri: str) -> ModelVersionRef:
        if self.fail:
            raise RegistryError("no such model")
        return ModelVersionRef(uri=uri, storage_uri="s3://m/1")

    async def check_gates(
        self, candidate: ModelVersionRef, stable: ModelVersionRef | None, gates: RegistryGates
    ) -> tuple[()]:
        return ()

    async def write_back(self, outcome: Any, spec: Any, rollout: str) -> None:
        return None


class Git:
    async def fetch(self, source: GitSourceSpec, credentials: Any = None) -> ManifestRevision:
        raise SourceError("cannot reach the repository")


@pytest.mark.asyncio
async def test_registry_calls_and_git_fetches_are_timed_by_result() -> None:
    """Given timed ports, when calls succeed and fail, then each is one observation labelled
    with its operation and result, and errors still reach the caller."""
    telemetry = Telemetry()
    ok, broken = TimedRegistry(Registry(False), telemetry), TimedRegistry(Registry(True), telemetry)

    assert (await ok.resolve("models:/m/1")).storage_uri == "s3://m/1"
    await ok.check_gates(ModelVersionRef("u", "s"), None, RegistryGates())
    with pytest.raises(RegistryError):
        await broken.resolve("models:/m/2")
    with pytest.raises(SourceError):
        await TimedGitSource(Git(), telemetry).fetch(
            GitSourceSpec(repository="https://x/r", path="m.yaml")
        )

    seconds = "modelrollout_registry_request_seconds_count"
    assert value(telemetry, seconds, operation="resolve", result="success") == 1
    assert value(telemetry, seconds, operation="resolve", result="error") == 1
    assert value(telemetry, seconds, operation="check_gates", result="success") == 1
    assert value(telemetry, "modelrollout_git_fetch_seconds_count", result="error") == 1


# ---------------------------------------------------------------- health and the server


@pytest.mark.asyncio
async def test_readiness_needs_the_startup_and_an_api_server_that_answers() -> None:
    """Not ready while starting; ready after startup once the API server answered; not ready
    when it stops answering, with the error's class only (its text may hold a URL)."""
    answers = [True]

    async def probe() -> object:
        if not answers[0]:
            raise ConnectionError("https://user:hunter2@api.example: refused")
        return "v1.31"

    health = Health(probe)
    assert not health.ready
    await health.check_api()
    assert not health.ready
    assert health.reason() == "the operator is starting"
    health.started = True
    assert health.ready

    answers[0] = False
    assert not await health.check_api()
    assert not health.ready
    assert health.reason() == "the API server does not answer (ConnectionError)"
    answers[0] = True
    assert await health.check_api()
    assert health.ready


@pytest.mark.asyncio
async def test_the_server_answers_metrics_health_and_readiness() -> None:
    """Given the server on 127.0.0.1, then /metrics is the exposition format, /healthz is 200,
    and /readyz is 503 until the startup is done, then 200."""
    telemetry = Telemetry()
    telemetry.record_pass("shop", "fraud", {}, status("Progressing", 20), 0.01)

    async def probe() -> object:
        return "v1.31"

    server = TelemetryServer(telemetry, Health(probe), host="127.0.0.1", port=0)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
            async with session.get(base + "/healthz") as response:
                assert response.status == 200
            async with session.get(base + "/readyz") as response:
                assert response.status == 503
                assert "starting" in await response.text()
            await server.health.check_api()
            server.health.started = True
            async with session.get(base + "/readyz") as response:
                assert response.status == 200
    finally:
        await server.stop()
    assert 'modelrollout_canary_weight{name="fraud",namespace="shop"} 20.0' in text


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9090", ("127.0.0.1", 9090)),
        (":9090", ("0.0.0.0", 9090)),
        ("[::1]:8000", ("::1", 8000)),
    ],
)
def test_the_address_is_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9090", "localhost:", "host:port", "h:70000"])
def test_a_malformed_address_is_refused_naming_the_variable(address: str) -> None:
    with pytest.raises(ValueError, match="MODELROLLOUT_METRICS_ADDRESS"):
        parse_address(address)


# ---------------------------------------------------------------- end to end

NAMESPACE = "e2e-telemetry"
SUCCESS_RATE_QUERY = "modelrollout_e2e_telemetry_success_rate"


class Scraped:
    def __init__(self, text: str) -> None:
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, series: str, /, **labels: str) -> float | None:
        found = [
            s.value for s in self.samples if s.name == series and labels.items() <= s.labels.items()
        ]
        return sum(found) if found else None


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture(scope="module")
def operator_with_metrics(
    kube_api: KubeApiProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Kubectl, str]]:
    """Given the emulator, the local KServe controller and the operator with
    MODELROLLOUT_METRICS_ADDRESS on a free loopback port."""
    workdir = tmp_path_factory.mktemp("e2e-telemetry")
    metrics = workdir / "metrics.json"
    metrics.write_text(json.dumps({SUCCESS_RATE_QUERY: 0.999}))
    port = free_base_port(1)
    kubectl = Kubectl(kube_api.kubeconfig)
    kubectl("create", "namespace", NAMESPACE)
    the_operator = operator(
        workdir,
        kube_api.kubeconfig,
        MODELROLLOUT_METRICS=f"static:{metrics}",
        MODELROLLOUT_METRICS_ADDRESS=f"127.0.0.1:{port}",
    )
    with running(kubectl, kserve_controller(workdir, kube_api.kubeconfig), the_operator):
        yield kubectl, f"http://127.0.0.1:{port}"


def _apply(kubectl: Kubectl, namespace: str, version: int) -> None:
    body = {
        "apiVersion": api.API_VERSION,
        "kind": api.ROLLOUT_KIND,
        "metadata": {"name": "pricing", "namespace": namespace},
        "spec": {
            "model": {"uri": f"models:/pricing/{version}"},
            "target": {
                "inferenceService": "pricing",
                "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
            },
            "strategy": {
                "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}],
                "analysis": {
                    "interval": "1s",
                    "metrics": [
                        {
                            "name": "success-rate",
                            "query": SUCCESS_RATE_QUERY,
                            "thresholdRange": {"min": 0.99},
                        }
                    ],
                },
            },
        },
    }
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))


def _phase(kubectl: Kubectl, namespace: str) -> tuple[str | None, str | None]:
    found = kubectl.json("get", "mro", "pricing", "-n", namespace).get("status", {})
    return found.get("phase"), found.get("stable", {}).get("version")


@pytest.mark.e2e
def test_a_promoted_rollout_shows_in_the_operators_metrics(
    operator_with_metrics: tuple[Kubectl, str],
) -> None:
    """Given the operator serving its metrics, when v1 starts and v2 is promoted through a 50%
    step judged by a passing metric, then /metrics shows the phase, the weight, the verdicts,
    the last value, both outcomes, pass and registry durations; /healthz and /readyz are 200;
    when the rollout is deleted its series go."""
    kubectl, base = operator_with_metrics
    ns = NAMESPACE
    wait_for("/readyz 200", lambda: _get(base + "/readyz")[0] == 200)
    _apply(kubectl, ns, 1)
    wait_for("v1 stable", lambda: _phase(kubectl, ns) == ("Succeeded", "1"))

    _apply(kubectl, ns, 2)
    wait_for("v2 promoted", lambda: _phase(kubectl, ns) == ("Succeeded", "2"))

    rollout = {"namespace": ns, "name": "pricing"}
    metric = {**rollout, "metric": "success-rate"}

    def scraped_once_promoted() -> Scraped | None:
        status, text = _get(base + "/metrics")
        found = Scraped(text) if status == 200 else None
        outcome = {**rollout, "outcome": "Promoted"}
        promoted = found and found.value("modelrollout_rollout_outcomes_total", **outcome)
        return found if promoted else None

    scraped = wait_for("the promotion in /metrics", scraped_once_promoted)
    assert scraped.value("modelrollout_rollout_phase", **rollout, phase="Succeeded") == 1
    assert scraped.value("modelrollout_rollout_phase", **rollout, phase="Progressing") == 0
    # The session's emulator holds other modules' rollouts too (this operator watches all).
    succeeded = scraped.value("modelrollout_rollouts", phase="Succeeded") or 0
    assert succeeded >= 1
    assert scraped.value("modelrollout_canary_weight", **rollout) == 0
    assert (scraped.value("modelrollout_analysis_verdicts_total", **metric, verdict="PASS")
            or 0) >= 1  # fmt: skip
    assert scraped.value("modelrollout_analysis_verdicts_total", **metric, verdict="FAIL") is None
    assert scraped.value("modelrollout_analysis_value", **metric) == pytest.approx(0.999)
    outcomes = "modelrollout_rollout_outcomes_total"
    assert scraped.value(outcomes, **rollout, outcome="Initialized") == 1
    assert scraped.value(outcomes, **rollout, outcome="Promoted", reason="RolloutPromoted") == 1
    assert (scraped.value("modelrollout_decision_seconds_count") or 0) >= 3
    resolved = {"operation": "resolve", "result": "success"}
    assert (scraped.value("modelrollout_registry_request_seconds_count", **resolved) or 0) >= 2
    assert _get(base + "/healthz")[0] == 200
    assert _get(base + "/readyz")[0] == 200

    kubectl("delete", "mro", "pricing", "-n", ns)
    gone = wait_for(
        "the rollout's series gone",
        lambda: 'namespace="e2e-telemetry"' not in (text := _get(base + "/metrics")[1]) and text,
    )
    assert Scraped(gone).value("modelrollout_rollouts", phase="Succeeded") == succeeded - 1
