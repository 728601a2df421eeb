"""The sandbox router: traffic split by KServe's status, proxying, Knative's metric names.

Two real model servers (the second with ``--error-rate 1.0``) started by
:class:`ProcessRuntime`, and the router on 127.0.0.1, all in one event loop on a thread; the
tests speak HTTP to the router. Covered: a seeded 80/20 split (exact replay, and within a
binomial tolerance), ``/metrics`` (request counts per revision and response-code class,
latency buckets, the prediction histogram), weights following the InferenceService, 404 and
503, and how the weights are read from serverless and RawDeployment statuses the local KServe
controller writes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import random
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelrollout.sandbox.kserve import revisions
from modelrollout.sandbox.kserve.processes import ModelSource, ProcessRuntime, free_port
from modelrollout.sandbox.modelserver import Faults
from modelrollout.sandbox.router import PREDICTION_BUCKETS, Router, Target, choose, serve, targets

NS, NAME = "models", "diabetes"
STABLE, CANARY = "diabetes-predictor-00001", "diabetes-predictor-00002"
GOOD_URI, BAD_URI = "s3://mlflow-bucket/1/good/artifacts", "s3://mlflow-bucket/1/bad/artifacts"
SEED = 20261127
ROW = [0.038076, 0.050680, 0.061696, 0.021872, -0.044223, -0.034821, -0.043401, -0.002592,
       0.019907, -0.017646]  # fmt: skip
START_SECONDS = 60.0


def serverless(split: dict[str, int]) -> dict[str, Any]:
    traffic = [
        {"tag": f"t{i}", "revisionName": revision, "percent": percent, "latestRevision": False}
        for i, (revision, percent) in enumerate(split.items())
    ]
    return {
        "metadata": {"name": NAME, "namespace": NS},
        "status": {"components": {"predictor": {"traffic": traffic}}},
    }


class World:
    """The runtime, its two servers and the router, running on their own event loop."""

    def __init__(self, model_dir: Path, run_dir: Path) -> None:
        self.model_dir, self.run_dir = model_dir, run_dir
        self.isvcs: dict[tuple[str, str], dict[str, Any]] = {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.router: Router | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _resolve(self, uri: str) -> ModelSource:
        faults = Faults(error_rate=1.0) if uri == BAD_URI else Faults()
        return ModelSource(self.model_dir, faults)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:  # reported to the test thread
            self.error = error
            self.started.set()

    async def _run(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        runtime = ProcessRuntime(self._resolve, self.run_dir, start_timeout=START_SECONDS)
        try:
            wanted = {STABLE: GOOD_URI, CANARY: BAD_URI}
            for _ in range(int(START_SECONDS * 10)):
                ready = [
                    await runtime.ensure(NS, NAME, rev, {"model": {"storageUri": uri}})
                    for rev, uri in wanted.items()
                ]
                if all(ready):
                    break
                await asyncio.sleep(0.1)  # waiting on real processes
            assert set(runtime.endpoints()) == {(NS, NAME, STABLE), (NS, NAME, CANARY)}
            self.router = Router(
                lambda ns, name: self.isvcs.get((ns, name)), runtime.endpoints, seed=SEED
            )
            runner = await serve(self.router, self.port)
            self.started.set()
            await self.stop.wait()
            await runner.cleanup()
        finally:
            await runtime.close()

    def close(self) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)

    def predict(self, namespace: str = NS, name: str = NAME) -> tuple[int, str | None]:
        request = urllib.request.Request(
            f"{self.base}/{namespace}/{name}/v1/models/{name}:predict",
            data=json.dumps({"instances": [ROW, ROW]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.headers.get("X-Revision")
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("X-Revision")

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as response:
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest.fixture(scope="module")
def world(diabetes_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(diabetes_model_dir, tmp_path_factory.mktemp("router-run"))
    world.thread.start()
    try:
        assert world.started.wait(START_SECONDS + 30), "the router did not start"
        if world.error is not None:
            raise world.error
        yield world
    finally:
        world.close()


def _total(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, found), v in metrics.items() if n == name and wanted <= found)


def test_an_80_20_split_and_the_metrics_it_leaves(world: World) -> None:
    # Given an InferenceService sending 80% to the stable revision and 20% to the canary
    world.isvcs[(NS, NAME)] = serverless({STABLE: 80, CANARY: 20})
    assert world.router is not None
    world.router.rng.seed(SEED)
    before = world.metrics()
    # When 200 requests come in
    outcomes = [world.predict() for _ in range(200)]
    after = world.metrics()
    # Then the split is the seeded draw, and within a binomial tolerance of 20%
    replay = random.Random(SEED)
    split = [Target(STABLE, STABLE, "c", 80), Target(CANARY, CANARY, "c", 20)]
    expected = Counter(choose(split, replay).revision for _ in range(200))
    served = Counter(revision for _, revision in outcomes)
    assert served == expected
    assert abs(served[CANARY] - 40) <= 4 * math.sqrt(200 * 0.2 * 0.8)
    # the canary fails every request, the stable one none
    assert {(s, r) for s, r in outcomes} == {(200, STABLE), (500, CANARY)}

    def delta(name: str, **labels: str) -> float:
        return _total(after, name, **labels) - _total(before, name, **labels)

    # and /metrics counts them per revision and response-code class, as queue-proxy does
    count = "revision_app_request_count"
    assert delta(count, revision_name=STABLE, response_code_class="2xx") == served[STABLE]
    assert delta(count, revision_name=STABLE, response_code="200") == served[STABLE]
    assert delta(count, revision_name=CANARY, response_code_class="5xx") == served[CANARY]
    assert delta(count, revision_name=CANARY, response_code_class="2xx") == 0
    labelled = {
        k: v
        for (n, labels), v in after.items()
        if n == count and ("revision_name", STABLE) in labels
        for k, v in labels
    }
    assert labelled["namespace_name"] == NS
    assert labelled["configuration_name"] == f"{NAME}-predictor"
    # with latency buckets in milliseconds
    latency = "revision_app_request_latencies"
    assert delta(f"{latency}_count", revision_name=CANARY) == served[CANARY]
    assert delta(f"{latency}_bucket", revision_name=STABLE, le="+Inf") == served[STABLE]
    assert delta(f"{latency}_bucket", revision_name=STABLE, le="10000.0") == served[STABLE]
    assert delta(f"{latency}_sum", revision_name=STABLE) > 0
    # and a histogram of the values the stable revision predicted (two rows a request)
    value = "modelrollout_prediction_value"
    assert delta(f"{value}_count", namespace_name=NS, revision_name=STABLE) == 2 * served[STABLE]
    assert delta(f"{value}_count", revision_name=CANARY) == 0
    bounds = {dict(labels)["le"] for (n, labels), _ in after.items() if n == f"{value}_bucket"}
    assert bounds == {str(b) for b in PREDICTION_BUCKETS} | {"+Inf"}
    assert delta(f"{value}_bucket", revision_name=STABLE, le="25.0") == 0


def test_the_weights_follow_the_inference_service(world: World) -> None:
    world.isvcs[(NS, NAME)] = serverless({STABLE: 100})
    assert {world.predict() for _ in range(20)} == {(200, STABLE)}
    world.isvcs[(NS, NAME)] = serverless({STABLE: 0, CANARY: 100})
    assert {world.predict() for _ in range(20)} == {(500, CANARY)}


def test_an_unknown_or_unready_inference_service_is_not_served(world: World) -> None:
    assert world.predict(NS, "nobody") == (404, None)
    assert world.predict("elsewhere", NAME) == (404, None)
    world.isvcs[(NS, NAME)] = {"metadata": {"name": NAME, "namespace": NS}, "status": {}}
    assert world.predict() == (503, None)


# ---------------------------------------------------------------- weights from the status


def _reconciled(isvc: dict[str, Any], ready: bool = True) -> dict[str, Any]:
    """``isvc`` with the status the local KServe controller writes, every revision ready."""
    book = revisions.plan(isvc)
    done = revisions.next_status(
        isvc, book, dict.fromkeys(book.revisions, ready), "2026-01-01T00:00:00Z"
    )
    return {**isvc, "status": done.status}


def _predictor(uri: str, **extra: Any) -> dict[str, Any]:
    return {"model": {"modelFormat": {"name": "mlflow"}, "storageUri": uri}, **extra}


def test_serverless_weights_come_from_the_traffic_block() -> None:
    isvc: dict[str, Any] = {
        "metadata": {"name": NAME, "namespace": NS, "generation": 1},
        "spec": {"predictor": _predictor(GOOD_URI)},
    }
    isvc = _reconciled(isvc)
    assert targets(isvc) == [Target(STABLE, STABLE, f"{NAME}-predictor", 100)]
    canary = copy.deepcopy(isvc)
    canary["spec"]["predictor"] = _predictor(BAD_URI, canaryTrafficPercent=20)
    canary = _reconciled(canary)
    assert sorted((t.revision, t.percent) for t in targets(canary)) == [
        (STABLE, 80),
        (CANARY, 20),
    ]


def test_raw_weights_come_from_the_canary_statuses() -> None:
    isvc: dict[str, Any] = {
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "generation": 1,
            "annotations": {revisions.DEPLOYMENT_MODE: revisions.RAW_DEPLOYMENT},
        },
        "spec": {
            "predictor": _predictor(GOOD_URI, name="stable"),
            "canary": [{"trafficPercent": 30, "predictor": _predictor(BAD_URI, name="canary")}],
        },
    }
    found = targets(_reconciled(isvc))
    # labelled by Deployment, as the raw routing adapter names revisions
    assert [(t.label, t.percent) for t in found] == [
        (f"{NAME}-stable-predictor", 70),
        (f"{NAME}-canary-predictor", 30),
    ]
    assert all(t.revision.startswith(t.label + "-") for t in found)
    # nothing is ready yet: nothing takes traffic
    assert targets(_reconciled(isvc, ready=False)) == []
