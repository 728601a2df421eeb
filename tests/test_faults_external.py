"""Faults outside Kubernetes: Prometheus, MLflow and git misbehave while models roll out.

Real processes: the API server emulator, the local KServe controller, ``mlflow server``, a
real Prometheus, git served over HTTP by ``git http-backend``, and the operator
(``modelrollout run``). Between the operator and Prometheus or MLflow sits a
:class:`FaultProxy` that forwards, or answers with the fault it is set to and counts it.
Each scenario has its own namespace, model, proxy and repository, so they run side by side.

What every scenario asserts: the InferenceService's (storageUri, canary weight) sequence,
``status.history``, the conditions and the events; no promotion while evidence is missing;
nothing lost and nothing written twice.

- Prometheus slow, refusing, a black hole, or answering garbage (not JSON, JSON of the
  wrong shape, ``"status": "error"``, NaN, +Inf, an empty vector) for as long as the rollout
  runs: errors roll the canary back once ``consecutiveErrorLimit`` is passed
  (AnalysisError); answers that carry no number pause it for a person (InconclusiveAnalysis).
  The same faults one after another, then a healthy Prometheus: promoted, but only after
  the last fault was answered.
- MLflow answering 503 when a new version is named: nothing moves, SourceReady says why,
  then the rollout proceeds. MLflow taking three writes of the promotion's write-back and
  then dropping every connection: traffic is promoted, the rollout waits in Promoting, and
  once MLflow is back the rest is written; every tag and the alias are written exactly once
  (counted at the proxy), the time tag included.
- git answering 503: the last good manifest keeps serving, SourceReady says why; back, the
  new commit rolls out. History rewritten by force-pushes (rewound to an older manifest, then
  an orphan commit naming another version): the branch is the truth, as in Argo CD and
  Flux; each new head rolls out like any commit, its id is in status, and the history
  entries already written stay.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch

import ledger
from gitrepos import GitHttpServer, Origin, git
from mlflow_server import MlflowServer, free_port
from modelrollout import api
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from processes import Kubectl, Process, kserve_controller, operator, running, wait_for
from prometheus_servers import LivePrometheus

pytestmark = pytest.mark.e2e

STORAGE = "s3://faults"
GIT_USER, GIT_TOKEN = "modelrollout", "git-token-for-faults"
#: How long a hung request is held before the proxy lets go (teardown releases it sooner).
HANG_SECONDS = 30.0
#: The provider timeout every MetricTemplate here sets; "slow" answers after more than it.
QUERY_TIMEOUT = 1.0
SLOW_SECONDS = 2.5
WAIT = 120.0


# ---------------------------------------------------------------- the fault proxy


@dataclass(frozen=True)
class Fault:
    """What the proxy does instead of forwarding: answer this, wait first, hang, or drop."""

    kind: str
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    #: Forward, but only after this long (the client has given up by then).
    delay: float = 0.0
    #: Read the request, never answer (a black hole).
    hang: bool = False
    #: Close the connection without an answer (a crashed server behind a balancer).
    drop: bool = False


@dataclass
class Seen:
    method: str
    path: str
    body: bytes
    fault: str | None
    at: float


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream``.

    Faults come from ``queue`` (one per request, in order) and then from ``fault`` (every
    request); with neither, requests are forwarded. ``seen`` records every request with the
    fault it got (None: forwarded); ``injected()`` counts them by kind.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.fault: Fault | None = None
        self.queue: list[Fault] = []
        self.seen: list[Seen] = []
        #: With a fault set: how many more writes (POST, PATCH, DELETE) pass before it applies.
        self.writes_before_fault = 0
        self.released = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def set(self, fault: Fault | None, *, after_writes: int = 0) -> None:
        """Answer every request with ``fault`` (None: forward), once ``after_writes`` more
        write requests have been forwarded."""
        with self.lock:
            self.fault = fault
            self.writes_before_fault = after_writes

    def sequence(self, faults: list[Fault]) -> None:
        with self.lock:
            self.queue = list(faults)

    def injected(self) -> Counter[str]:
        with self.lock:
            return Counter(s.fault for s in self.seen if s.fault is not None)

    def last_fault_at(self) -> float:
        with self.lock:
            return max((s.at for s in self.seen if s.fault is not None), default=0.0)

    def forwarded(self, method: str, path: str) -> list[dict[str, Any]]:
        """Bodies of the requests forwarded to ``method path`` (JSON)."""
        with self.lock:
            found = [s for s in self.seen if s.fault is None]
        return [json.loads(s.body) for s in found if (s.method, s.path) == (method, path)]

    def _take(self, method: str) -> Fault | None:
        with self.lock:
            if self.queue:
                return self.queue.pop(0)
            if self.fault is not None and self.writes_before_fault > 0:
                self.writes_before_fault -= method != "GET"
                return None
            return self.fault

    @contextmanager
    def running(self) -> Iterator[FaultProxy]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads ``seen``."""

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_PATCH(self) -> None:
                self._handle()

            def do_DELETE(self) -> None:
                self._handle()

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._take(self.command)
                path = self.path.partition("?")[0]
                with proxy.lock:
                    kind = fault.kind if fault else None
                    proxy.seen.append(Seen(self.command, path, body, kind, time.time()))
                if fault is None:
                    self._forward(body)
                elif fault.hang:
                    proxy.released.wait(HANG_SECONDS)
                    self.close_connection = True
                elif fault.drop:
                    self.close_connection = True
                elif fault.delay:
                    proxy.released.wait(fault.delay)
                    self._forward(body)
                else:
                    self._answer(fault.status, fault.content_type, fault.body)

            def _forward(self, body: bytes) -> None:
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("content-type", "authorization", "accept")
                }
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body if self.command != "GET" else None,
                    method=self.command,
                    headers=headers,
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, data, kind = answer.status, answer.read(), answer.headers
                except urllib.error.HTTPError as refused:
                    status, data, kind = refused.code, refused.read(), refused.headers
                except (urllib.error.URLError, OSError):
                    self.close_connection = True
                    return
                self._answer(status, kind.get("Content-Type", "application/json"), data)

            def _answer(self, status: int, content_type: str, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True  # the client gave up first

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        self._server = server
        try:
            yield self
        finally:
            self.released.set()
            server.shutdown()
            server.server_close()
            thread.join(10)


# ---------------------------------------------------------------- the world


class Recorder:
    """Every distinct (storageUri, canaryTrafficPercent) each InferenceService spec takes,
    with the time it was seen, from one watch across the cluster."""

    def __init__(self, objects: client.CustomObjectsApi) -> None:
        self.objects = objects
        self.lock = threading.Lock()
        self.seen: dict[str, list[tuple[tuple[str | None, int | None], float]]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        version: str | None = None
        while not self.stop.is_set():
            try:
                stream = watch.Watch().stream(
                    self.objects.list_cluster_custom_object,
                    "serving.kserve.io",
                    "v1beta1",
                    "inferenceservices",
                    timeout_seconds=2,
                    **({"resource_version": version} if version else {}),
                )
                for event in stream:
                    if event["type"] == "ERROR":
                        version = None  # 410 Gone: list afresh
                        break
                    version = event["object"]["metadata"]["resourceVersion"]
                    self._note(event["object"])
            except client.ApiException:
                version = None
                self.stop.wait(0.2)

    def _note(self, isvc: dict[str, Any]) -> None:
        predictor = isvc["spec"]["predictor"]
        state = (
            predictor.get("model", {}).get("storageUri"),
            predictor.get("canaryTrafficPercent"),
        )
        with self.lock:
            states = self.seen.setdefault(isvc["metadata"]["namespace"], [])
            if not states or states[-1][0] != state:
                states.append((state, time.time()))

    def states(self, namespace: str) -> list[tuple[str | None, int | None]]:
        with self.lock:
            return [state for state, _ in self.seen.get(namespace, [])]

    def first_seen(self, namespace: str, state: tuple[str | None, int | None]) -> float | None:
        with self.lock:
            return next((t for s, t in self.seen.get(namespace, []) if s == state), None)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


class World:
    def __init__(
        self, kube_api: KubeApiProcess, mlflow: MlflowServer, prometheus: str, workdir: Path
    ) -> None:
        self.kubectl = Kubectl(kube_api.kubeconfig)
        api_client = config.new_client_from_config(str(kube_api.kubeconfig))
        self.objects = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.mlflow_url = mlflow.url
        self.prometheus_url = prometheus
        self.git_root = workdir / "git"
        self.git_root.mkdir()
        self.git_server = GitHttpServer(self.git_root, GIT_USER, GIT_TOKEN)
        self.kserve: Process = kserve_controller(workdir, kube_api.kubeconfig)
        self.operator: Process = operator(
            workdir,
            kube_api.kubeconfig,
            MODELROLLOUT_REGISTRY="mlflow",
            MODELROLLOUT_MLFLOW_TRACKING_URI=mlflow.url,
            MODELROLLOUT_GIT_CACHE=str(workdir / "git-cache"),
            MODELROLLOUT_NAMESPACES="faults-*",
            # One try per call: the next pass is the retry (MLflow's own default is 7).
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
            MLFLOW_HTTP_REQUEST_TIMEOUT="5",
        )
        self.recorder: Recorder | None = None

    # ------------------------------------------------------------ set-up

    def namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    def apply(self, namespace: str, body: dict[str, Any]) -> None:
        body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))

    def register(self, name: str, versions: int) -> None:
        """``versions`` versions of model ``name`` in MLflow, each stored at ``storage()``."""
        import warnings

        from mlflow import MlflowClient

        registry = MlflowClient(self.mlflow_url)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's own deprecation notices; set-up only
            registry.create_registered_model(name)
            for version in range(1, versions + 1):
                registry.create_model_version(name, storage(name, version))

    def model_uri(self, namespace: str, name: str, version: int) -> None:
        patch = {"spec": {"model": {"uri": f"models:/{name}/{version}"}}}
        self.kubectl(
            "patch", "mro", name, "-n", namespace, "--type", "merge", "-p", json.dumps(patch)
        )

    # ------------------------------------------------------------ reading

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.objects.get_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.ROLLOUT_PLURAL, name
        )
        status: dict[str, Any] = found.get("status", {})
        return status

    def wait(
        self,
        namespace: str,
        name: str,
        what: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float = WAIT,
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(namespace, name)
            return status if done(status) else None

        return wait_for(f"{namespace}/{name}: {what}", probe, timeout)

    def wait_stable(self, namespace: str, name: str, version: int) -> dict[str, Any]:
        return self.wait(
            namespace,
            name,
            f"v{version} stable",
            lambda s: (
                s.get("phase") == "Succeeded" and s.get("stable", {}).get("version") == str(version)
            ),
        )

    def serves_alone(self, namespace: str, name: str, uri: str) -> bool:
        isvc = self.objects.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
        )
        predictor = isvc["spec"]["predictor"]
        traffic = isvc.get("status", {}).get("components", {}).get("predictor", {})
        return (
            predictor["model"]["storageUri"] == uri
            and "canaryTrafficPercent" not in predictor
            and [t["percent"] for t in traffic.get("traffic", [])] == [100]
        )

    def events(self, namespace: str, name: str) -> Counter[str]:
        """How many events of each reason the rollout has."""
        found = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        )
        return Counter(e.reason for e in found.items)

    def states(self, namespace: str) -> list[tuple[str | None, int | None]]:
        assert self.recorder is not None
        return self.recorder.states(namespace)


@pytest.fixture(scope="module")
def world(
    kube_api: KubeApiProcess,
    mlflow_server: MlflowServer,
    live_prometheus: LivePrometheus,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """Given the emulator, KServe, MLflow, Prometheus, a git server and the operator."""
    mlflow_server.wait_ready()
    found = World(kube_api, mlflow_server, live_prometheus.url, tmp_path_factory.mktemp("faults"))
    found.git_server.start()
    try:
        with running(found.kubectl, found.kserve, found.operator):
            found.recorder = Recorder(found.objects)
            try:
                yield found
            finally:
                found.recorder.close()
    finally:
        found.git_server.stop()


def storage(name: str, version: int) -> str:
    return f"{STORAGE}/{name}/{version}"


def rollout(name: str, model: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.ROLLOUT_KIND,
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "target": {
                "inferenceService": name,
                "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
            },
            "strategy": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]},
            **spec,
        },
    }


def condition(status: dict[str, Any], kind: str) -> tuple[str, str]:
    found = next(c for c in status.get("conditions", []) if c["type"] == kind)
    return found["status"], found["reason"]


def outcomes(status: dict[str, Any]) -> list[str]:
    return [h["outcome"] for h in status.get("history", [])]


def concurrently(*scenarios: Callable[[], None]) -> None:
    """Run the scenarios side by side; the first failure fails the test."""
    with ThreadPoolExecutor(len(scenarios)) as pool:
        for future in [pool.submit(s) for s in scenarios]:
            future.result()


# ---------------------------------------------------------------- Prometheus


def _vector(*values: str) -> bytes:
    series = [{"metric": {}, "value": [1767268800, value]} for value in values]
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": series}}
    ).encode()


SLOW = Fault("slow (answers after the provider's timeout)", delay=SLOW_SECONDS)
BLACK_HOLE = Fault("black hole (never answers)", hang=True)
NOT_JSON = Fault(
    "answers 200 with HTML", body=b"<html><body>502 Bad Gateway</body></html>",
    content_type="text/html",
)  # fmt: skip
WRONG_SHAPE = Fault(
    "answers JSON of the wrong shape",
    body=json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}
    ).encode(),
)
STATUS_ERROR = Fault(
    'answers "status": "error"',
    body=json.dumps(
        {"status": "error", "errorType": "internal", "error": "query processing failed"}
    ).encode(),
)
NAN = Fault("answers NaN", body=_vector("NaN"))
INFINITY = Fault("answers +Inf", body=_vector("+Inf"))
EMPTY = Fault("answers an empty vector", body=_vector())
REFUSED = "down (connection refused)"


@dataclass
class PromCase:
    """One rollout whose Prometheus misbehaves: ``fault`` for good, or ``sequence`` first."""

    name: str
    expect: str
    fault: Fault | None = None
    sequence: list[Fault] = field(default_factory=list)
    refused: bool = False
    error_limit: int = 1
    inconclusive_limit: int = 0

    @property
    def namespace(self) -> str:
        return f"faults-prom-{self.name}"

    @property
    def model(self) -> str:
        return f"faults-prom-{self.name}"


PROMETHEUS_CASES = [
    PromCase("refused", "rollback", refused=True),
    PromCase("hole", "rollback", BLACK_HOLE),
    PromCase("html", "rollback", NOT_JSON),
    PromCase("shape", "rollback", WRONG_SHAPE),
    PromCase("error", "rollback", STATUS_ERROR),
    PromCase("nan", "inconclusive", NAN),
    PromCase("inf", "inconclusive", INFINITY),
    PromCase("empty", "inconclusive", EMPTY),
    PromCase(
        "recovers",
        "promoted",
        sequence=[
            SLOW,
            SLOW,
            BLACK_HOLE,
            NOT_JSON,
            WRONG_SHAPE,
            STATUS_ERROR,
            NAN,
            INFINITY,
            EMPTY,
        ],
        error_limit=9,
        inconclusive_limit=9,
    ),
]


def _prometheus_rollout(case: PromCase, address: str) -> tuple[dict[str, Any], dict[str, Any]]:
    template = {
        "apiVersion": api.API_VERSION,
        "kind": api.TEMPLATE_KIND,
        "metadata": {"name": "success-rate"},
        "spec": {
            "provider": {"prometheus": {"address": address, "timeout": f"{QUERY_TIMEOUT:g}s"}},
            # Evaluated without scraping anything: the value is the proxy's to spoil.
            "query": "vector(0.999)",
        },
    }
    body = rollout(case.model, {"uri": f"models:/{case.model}/1"})
    body["spec"]["strategy"]["analysis"] = {
        "interval": "1s",
        "metrics": [
            {
                "name": "success-rate",
                "templateRef": {"name": "success-rate"},
                "thresholdRange": {"min": 0.99},
                "consecutiveErrorLimit": case.error_limit,
                "inconclusiveLimit": case.inconclusive_limit,
            }
        ],
    }
    return template, body


def _never_promoted(world: World, case: PromCase) -> list[tuple[str | None, int | None]]:
    states = world.states(case.namespace)
    v1, v2 = storage(case.model, 1), storage(case.model, 2)
    assert states[0] == (v1, None)
    assert (v2, None) not in states
    assert {weight for uri, weight in states if uri == v2} <= {50, 0}
    return states


def _check_prometheus_case(world: World, case: PromCase, proxy: FaultProxy) -> None:
    ns, name = case.namespace, case.model
    v1, v2 = storage(name, 1), storage(name, 2)
    if case.expect == "rollback":
        # Then more errors in a row than consecutiveErrorLimit roll the canary back.
        status = world.wait(ns, name, "rolled back", lambda s: s.get("phase") == "Failed")
        assert outcomes(status) == ["Initialized", "RolledBack"]
        assert status["history"][-1]["reason"] == "AnalysisError"
        assert status["failedVersions"] == [f"{name}/2"]
        assert condition(status, "Healthy") == ("False", "AnalysisError")
        metric = status["analysis"]["metrics"][0]
        assert metric["verdict"] == "ERROR"
        assert metric["consecutiveErrors"] == case.error_limit + 1
        assert "successful" not in metric or metric["successful"] == 0
        wait_for(f"{ns}: v1 alone", lambda: world.serves_alone(ns, name, v1))
        states = _never_promoted(world, case)
        assert states[-1] == (v1, None)
        events = world.events(ns, name)
        assert (events["AnalysisError"], events["RolledBack"], events["RolloutPromoted"]) == (
            1,
            1,
            0,
        )
    elif case.expect == "inconclusive":
        # Then an answer with no number in it is no evidence: the canary waits for a person.
        status = world.wait(
            ns,
            name,
            "paused as inconclusive",
            lambda s: (
                s.get("phase") == "Paused"
                and condition(s, "Progressing")[1] == "InconclusiveAnalysis"
            ),
        )
        assert condition(status, "Healthy") == ("False", "InconclusiveAnalysis")
        assert outcomes(status) == ["Initialized"]
        assert status["stable"]["version"] == "1"
        assert status["canaryWeight"] == 50
        metric = status["analysis"]["metrics"][0]
        # Past inconclusiveLimit (0) at the first; measured on while it waits.
        assert metric["verdict"] == "INCONCLUSIVE"
        assert metric["inconclusive"] >= 1
        assert "successful" not in metric or metric["successful"] == 0
        assert _never_promoted(world, case)[-1] == (v2, 50)
        events = world.events(ns, name)
        assert (events["InconclusiveAnalysis"], events["RolloutPromoted"]) == (1, 0)
    else:
        # Then, once Prometheus answers well again, the canary is promoted: never before.
        status = world.wait_stable(ns, name, 2)
        assert proxy.queue == []
        promoted_at = world.recorder.first_seen(ns, (v2, None)) if world.recorder else None
        assert promoted_at is not None
        assert promoted_at > proxy.last_fault_at()
        assert outcomes(status) == ["Initialized", "Promoted"]
        assert world.states(ns) == [(v1, None), (v2, 50), (v2, None)]
        metric = status["analysis"]["metrics"][0]
        assert metric["verdict"] == "PASS"
        judged = metric.get("error", 0) + metric.get("inconclusive", 0)
        assert 1 <= judged <= len(case.sequence)
        events = world.events(ns, name)
        assert (events["RolloutPromoted"], events["RolledBack"]) == (1, 0)


def test_prometheus_faults_hold_back_promotion_and_roll_back(world: World) -> None:
    """Given nine rollouts at v1, each with a MetricTemplate behind its own proxy, when v2
    arrives and Prometheus misbehaves, then errors roll back, answers without a number pause
    for a person, and the rollout whose faults pass is promoted only after they did."""
    with ExitStack() as stack:
        proxies: dict[str, FaultProxy] = {}
        for case in PROMETHEUS_CASES:
            world.namespace(case.namespace)
            world.register(case.model, 2)
            proxy = stack.enter_context(FaultProxy(world.prometheus_url).running())
            proxies[case.name] = proxy
            address = f"http://127.0.0.1:{free_port()}" if case.refused else proxy.url
            template, body = _prometheus_rollout(case, address)
            world.apply(case.namespace, template)
            world.apply(case.namespace, body)
        for case in PROMETHEUS_CASES:
            world.wait_stable(case.namespace, case.model, 1)

        for case in PROMETHEUS_CASES:
            proxies[case.name].set(case.fault)
            proxies[case.name].sequence(case.sequence)
            world.model_uri(case.namespace, case.model, 2)
        try:
            concurrently(
                *(
                    (lambda case=case: _check_prometheus_case(world, case, proxies[case.name]))
                    for case in PROMETHEUS_CASES
                )
            )
        finally:
            for case in PROMETHEUS_CASES:
                for kind, count in proxies[case.name].injected().items():
                    ledger.fault(f"prometheus {kind}", count)
                if case.refused:
                    # Nothing listens, so nothing can count: the operator's own count it is.
                    judged = world.status(case.namespace, case.model).get("analysis", {})
                    errors = sum(m.get("error", 0) for m in judged.get("metrics", []))
                    ledger.fault(f"prometheus {REFUSED}", errors)


# ---------------------------------------------------------------- MLflow

UNAVAILABLE = Fault("unavailable (503)", 503, b"<html>503 Service Unavailable</html>", "text/html")
DROPPED = Fault("drops the connection without an answer", drop=True)
SET_TAG = ("POST", "/api/2.0/mlflow/model-versions/set-tag")
SET_ALIAS = ("POST", "/api/2.0/mlflow/registered-models/alias")
DELETE_TAG = ("DELETE", "/api/2.0/mlflow/model-versions/delete-tag")


def _registry_rollout(name: str, proxy: FaultProxy, pause: str) -> dict[str, Any]:
    body = rollout(
        name,
        {"uri": f"models:/{name}/1"},
        registry={"trackingUri": proxy.url, "writeBack": {"alias": "champion"}},
    )
    body["spec"]["strategy"]["steps"] = [{"setWeight": 50}, {"pause": {"duration": pause}}]
    return body


def _written_once(world: World, proxy: FaultProxy, name: str) -> None:
    """Each tag of each version was set once, the alias moved once per version, nothing
    was deleted, and MLflow now holds what the promotion of v2 wrote."""
    from mlflow import MlflowClient

    tags = Counter((b["version"], b["key"]) for b in proxy.forwarded(*SET_TAG))
    assert tags
    assert max(tags.values()) == 1, tags
    assert {key for version, key in tags if version == "2"} == {
        "modelrollout.rollout",
        "modelrollout.commit",
        "modelrollout.time",
        "modelrollout.verdict",
    }
    assert [(b["alias"], b["version"]) for b in proxy.forwarded(*SET_ALIAS)] == [
        ("champion", "1"),
        ("champion", "2"),
    ]
    assert proxy.forwarded(*DELETE_TAG) == []
    registry = MlflowClient(world.mlflow_url)
    assert registry.get_model_version_by_alias(name, "champion").version == "2"
    assert registry.get_model_version(name, "2").tags["modelrollout.verdict"] == "Promoted"


def _mlflow_down_when_a_version_arrives(world: World, proxy: FaultProxy) -> None:
    ns = name = "faults-mlflow-resolve"
    v1, v2 = storage(name, 1), storage(name, 2)
    world.apply(ns, _registry_rollout(name, proxy, "1s"))
    world.wait_stable(ns, name, 1)

    # When MLflow answers 503 and v2 is named, then nothing moves and SourceReady says why.
    proxy.set(UNAVAILABLE)
    world.model_uri(ns, name, 2)
    world.wait(ns, name, "source not ready", lambda s: condition(s, "SourceReady")[0] == "False")
    wait_for("passes meeting the outage", lambda: proxy.injected()[UNAVAILABLE.kind] >= 4)
    status = world.status(ns, name)
    assert condition(status, "SourceReady") == ("False", "SourceError")
    assert "503" in next(c for c in status["conditions"] if c["type"] == "SourceReady")["message"]
    assert (status["phase"], status["stable"]["version"]) == ("Succeeded", "1")
    assert "canary" not in status
    assert world.serves_alone(ns, name, v1)
    assert world.events(ns, name)["SourceError"] == 1

    # When MLflow is back, then v2 rolls out and is promoted, and MLflow learns it once.
    proxy.set(None)
    ledger.fault(f"mlflow {UNAVAILABLE.kind}", proxy.injected()[UNAVAILABLE.kind])
    status = world.wait_stable(ns, name, 2)
    assert condition(status, "SourceReady") == ("True", "SourceResolved")
    assert outcomes(status) == ["Initialized", "Promoted"]
    assert world.states(ns) == [(v1, None), (v2, 50), (v2, None)]
    _written_once(world, proxy, name)


def _mlflow_down_at_write_back(world: World, proxy: FaultProxy) -> None:
    ns = name = "faults-mlflow-writeback"
    v1, v2 = storage(name, 1), storage(name, 2)
    world.apply(ns, _registry_rollout(name, proxy, "3s"))
    world.wait_stable(ns, name, 1)
    world.model_uri(ns, name, 2)
    world.wait(ns, name, "v2 paused at 50%", lambda s: s.get("phase") == "Paused")

    # When MLflow takes three writes of the promotion and then drops every connection, then
    # traffic is promoted but the rollout waits in Promoting, MLflow's alias unmoved.
    proxy.set(DROPPED, after_writes=3)
    world.wait(ns, name, "promoting", lambda s: s.get("phase") == "Promoting")
    wait_for("v2 alone", lambda: world.serves_alone(ns, name, v2))
    dropped = proxy.injected()[DROPPED.kind]
    wait_for("write-back retries", lambda: proxy.injected()[DROPPED.kind] >= dropped + 3)
    status = world.status(ns, name)
    assert status["phase"] == "Promoting"
    assert outcomes(status) == ["Initialized"]
    # Said in the operator's log; no Event yet (kopf gives daemons a logger that posts none).
    assert "WriteBack failed: cannot reach MLflow" in world.operator.log.read_text()
    from mlflow import MlflowClient

    registry = MlflowClient(world.mlflow_url)
    assert registry.get_model_version_by_alias(name, "champion").version == "1"
    assert "modelrollout.verdict" not in registry.get_model_version(name, "2").tags

    # When MLflow is back, then the rest is written, and nothing twice.
    proxy.set(None)
    ledger.fault(f"mlflow {DROPPED.kind}", proxy.injected()[DROPPED.kind])
    status = world.wait_stable(ns, name, 2)
    assert outcomes(status) == ["Initialized", "Promoted"]
    assert world.states(ns) == [(v1, None), (v2, 50), (v2, None)]
    assert world.events(ns, name)["RolloutPromoted"] == 1
    _written_once(world, proxy, name)


def test_mlflow_down_delays_but_loses_and_repeats_nothing(world: World) -> None:
    """Given rollouts whose registry is MLflow behind a proxy, when MLflow answers 503 as a
    new version is named, or drops connections in the middle of the promotion's write-back,
    then no traffic moves on a version it cannot resolve, and every write lands once."""
    with ExitStack() as stack:
        proxies = []
        for name in ("faults-mlflow-resolve", "faults-mlflow-writeback"):
            world.namespace(name)
            world.register(name, 2)
            proxies.append(stack.enter_context(FaultProxy(world.mlflow_url).running()))
        concurrently(
            lambda: _mlflow_down_when_a_version_arrives(world, proxies[0]),
            lambda: _mlflow_down_at_write_back(world, proxies[1]),
        )


# ---------------------------------------------------------------- git


def _manifest(origin: Origin, name: str, version: int) -> str:
    return origin.commit({"model.yaml": yaml.safe_dump({"modelUri": f"models:/{name}/{version}"})})


def _git_rollout(world: World, ns: str, name: str) -> Origin:
    origin = Origin(world.git_root, f"{name}.git")
    world.kubectl(
        "create", "secret", "generic", "git-token", "-n", ns,
        f"--from-literal=username={GIT_USER}", f"--from-literal=password={GIT_TOKEN}",
    )  # fmt: skip
    source = {
        "repository": world.git_server.url(f"{name}.git"),
        "path": "model.yaml",
        "interval": "1s",
        "secretRef": {"name": "git-token"},
    }
    world.apply(ns, rollout(name, {"git": source}))
    return origin


def _git_unreachable(world: World) -> None:
    ns = name = "faults-git-unreachable"
    v1, v2 = storage(name, 1), storage(name, 2)
    first = _manifest(origin := _git_rollout(world, ns, name), name, 1)
    assert world.wait_stable(ns, name, 1)["stable"]["gitCommit"] == first

    # When the git host answers 503 and v2 is committed, then the last good manifest serves.
    before = len(world.git_server.seen)
    world.git_server.state.unavailable.add(f"{name}.git")
    second = _manifest(origin, name, 2)
    world.wait(ns, name, "source not ready", lambda s: condition(s, "SourceReady")[0] == "False")
    wait_for("fetches meeting the outage", lambda: _refused(world, ns, before) >= 3)
    status = world.status(ns, name)
    assert condition(status, "SourceReady") == ("False", "SourceError")
    assert (status["phase"], status["stable"]["gitCommit"]) == ("Succeeded", first)
    assert "canary" not in status
    assert world.serves_alone(ns, name, v1)
    assert world.events(ns, name)["SourceError"] == 1

    # When it is back, then the commit it could not fetch rolls out.
    refused = _refused(world, ns, before)
    world.git_server.state.unavailable.discard(f"{name}.git")
    ledger.fault("git unreachable (503)", refused)
    status = world.wait_stable(ns, name, 2)
    assert status["stable"]["gitCommit"] == second
    assert condition(status, "SourceReady") == ("True", "SourceResolved")
    assert outcomes(status) == ["Initialized", "Promoted"]
    assert world.states(ns) == [(v1, None), (v2, 50), (v2, None)]


def _refused(world: World, namespace: str, since: int) -> int:
    """Requests for this scenario's repository the server refused while unavailable."""
    return sum(1 for s in world.git_server.seen[since:] if namespace in s.path)


def _git_force_pushed(world: World) -> None:
    ns = name = "faults-git-rewritten"
    v1, v2, v3 = (storage(name, v) for v in (1, 2, 3))
    origin = _git_rollout(world, ns, name)
    first = _manifest(origin, name, 1)
    world.wait_stable(ns, name, 1)
    second = _manifest(origin, name, 2)
    world.wait_stable(ns, name, 2)

    # When main is force-pushed back to the first commit, then the branch is the truth:
    # v1 rolls out again from that commit, and the history already written stays.
    git("reset", "--quiet", "--hard", first, cwd=origin.work)
    origin.push(force=True)
    status = world.wait(
        ns, name, "rewound to v1",
        lambda s: s.get("phase") == "Succeeded" and s["stable"]["gitCommit"] == first,
    )  # fmt: skip
    assert status["stable"]["version"] == "1"

    # When an orphan commit naming v3 replaces the whole history, then v3 rolls out.
    third = origin.orphan(
        {"model.yaml": yaml.safe_dump({"modelUri": f"models:/{name}/3"})}, "rewrite"
    )
    status = world.wait_stable(ns, name, 3)
    assert status["stable"]["gitCommit"] == third
    assert [
        (h["outcome"], h["model"]["version"], h["model"]["gitCommit"]) for h in status["history"]
    ] == [
        ("Initialized", "1", first),
        ("Promoted", "2", second),
        ("Promoted", "1", first),
        ("Promoted", "3", third),
    ]

    # When another orphan commit names v3 again, then no traffic moves: the stable keeps the
    # commit it was deployed from, and SourceReady names the commit the branch holds now.
    fourth = origin.orphan(
        {"model.yaml": yaml.safe_dump({"modelUri": f"models:/{name}/3"})}, "rewrite again"
    )
    ledger.fault("git history force-pushed", 3)
    status = world.wait(ns, name, "the new head read", lambda s: fourth in _source_message(s))
    assert condition(status, "SourceReady") == ("True", "SourceResolved")
    assert (status["phase"], status["stable"]["gitCommit"]) == ("Succeeded", third)
    assert len(status["history"]) == 4
    assert world.states(ns) == [
        (v1, None), (v2, 50), (v2, None), (v1, 50), (v1, None), (v3, 50), (v3, None),
    ]  # fmt: skip
    assert world.events(ns, name)["RolloutPromoted"] == 3


def _source_message(status: dict[str, Any]) -> str:
    found: dict[str, Any] = next(
        (c for c in status.get("conditions", []) if c["type"] == "SourceReady"), {}
    )
    message: str = found.get("message", "")
    return message


def test_git_unreachable_or_rewritten(world: World) -> None:
    """Given rollouts reading manifests from git over HTTP, when the host answers 503 the last
    good manifest keeps serving until it is back; when main is force-pushed, the new head
    rolls out like any commit."""
    for ns in ("faults-git-unreachable", "faults-git-rewritten"):
        world.namespace(ns)
    world.register("faults-git-unreachable", 2)
    world.register("faults-git-rewritten", 3)
    concurrently(lambda: _git_unreachable(world), lambda: _git_force_pushed(world))
