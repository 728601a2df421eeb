"""Shared test set-up: hypothesis profiles (CI runs 500 examples per property) and the CRDs.

Tests run with ``--import-mode=importlib``, so helpers here are fixtures, not imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings
from kubernetes import client, config

import ledger
import planted
from mlflow_server import MlflowServer
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from prometheus_history import History, HistoryServer
from prometheus_servers import Exporter, LivePrometheus, backfilled, copy_tsdb, prometheus

settings.register_profile(
    "ci", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


REPO = Path(__file__).resolve().parents[1]


def _load_crd(name: str) -> dict[str, Any]:
    """The CRD ``crds/<name>.yaml``, e.g. ``modelrollouts.modelrollout.io``."""
    with (REPO / "crds" / f"{name}.yaml").open(encoding="utf-8") as stream:
        crd: dict[str, Any] = yaml.safe_load(stream)
    return crd


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def rollout_crd() -> dict[str, Any]:
    """The ModelRollout CRD as a plain dict (treat it as read-only: it is shared)."""
    return _load_crd("modelrollouts.modelrollout.io")


@pytest.fixture(scope="session")
def template_crd() -> dict[str, Any]:
    """The MetricTemplate CRD as a plain dict (treat it as read-only: it is shared)."""
    return _load_crd("metrictemplates.modelrollout.io")


def _served_schema(crd: dict[str, Any]) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the CRD's storage version."""
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture(scope="session")
def rollout_schema(rollout_crd: dict[str, Any]) -> dict[str, Any]:
    """The ModelRollout ``openAPIV3Schema`` (v1alpha1), read-only."""
    return _served_schema(rollout_crd)


@pytest.fixture(scope="session")
def template_schema(template_crd: dict[str, Any]) -> dict[str, Any]:
    """The MetricTemplate ``openAPIV3Schema`` (v1alpha1), read-only."""
    return _served_schema(template_crd)


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiProcess]:
    """The Kubernetes API emulator as a process for the whole session, with crds/*.yaml applied.

    ``.url``, ``.kubeconfig`` (a Path), ``.audit()``, ``.clear_audit()``, ``.inject_fault(...)``,
    ``.clear_faults()`` and ``.stats()``; tests share it, so each uses its own namespace.
    """
    workdir = tmp_path_factory.mktemp("kube-api")
    crds = sorted((REPO / "crds").glob("*.modelrollout.io.yaml"))
    with KubeApiProcess.start(workdir, crds=crds) as api:
        yield api
        # What the operators wrote, for the planted-secrets scan (tests/planted.py).
        planted.dump_api(api.url, workdir / "objects")


@pytest.fixture
def api_namespace(kube_api: KubeApiProcess) -> Iterator[tuple[client.ApiClient, str]]:
    """A Kubernetes client of the session's emulator and a namespace of the test's own,
    deleted afterwards."""
    api_client = config.new_client_from_config(config_file=str(kube_api.kubeconfig))
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
    yield api_client, namespace
    client.CoreV1Api(api_client).delete_namespace(namespace)
    api_client.close()


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(planted.SCAN, "planted-secrets-scan")


@pytest.fixture(scope="session", autouse=True)
def planted_secrets_scan_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The session's basetemp: scanned for planted secrets when the session ends."""
    planted.SCAN.root = tmp_path_factory.getbasetemp()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--e2e",
        action="store_true",
        help="also run the end-to-end tests (marker e2e); scripts/test and CI always do",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """End-to-end tests are opt-in during development and always run in CI."""
    if config.getoption("--e2e") or os.environ.get("CI") == "true":
        return
    chosen = [item for item in items if "e2e" not in item.keywords]
    if len(chosen) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if "e2e" in i.keywords])
        items[:] = chosen


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Settle the test's fault and bad-input records (tests/ledger.py) from its outcome."""
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        ledger.LEDGER.settle(passed=report.passed)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = ledger.LEDGER.lines()
    if lines:
        terminalreporter.section("reliability: faults and bad inputs")
        for line in lines:
            terminalreporter.write_line(line)
    target = os.environ.get("MODELROLLOUT_RELIABILITY_JSON")
    if target:
        ledger.LEDGER.write_json(Path(target))


@pytest.fixture(scope="session")
def live_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePrometheus]:
    """A real Prometheus on 127.0.0.1 scraping a test-controlled exporter every second.

    ``.url``; ``.publish(openmetrics)`` serves new metric families and returns once
    Prometheus has scraped them. Tests share it: each uses its own series labels.
    """
    exporter = Exporter()
    workdir = tmp_path_factory.mktemp("prometheus-live")
    with exporter.running(), prometheus(workdir, (exporter.url,)) as server:
        yield LivePrometheus(server, exporter)


@pytest.fixture(scope="session")
def prometheus_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryServer]:
    """A real Prometheus on the known hour of tests/prometheus_history.py (promtool backfill)."""
    history = History.ending_before(datetime.now(UTC))
    blocks = backfilled(tmp_path_factory.mktemp("prometheus-blocks"), history.openmetrics())
    workdir = tmp_path_factory.mktemp("prometheus-history")
    copy_tsdb(blocks, workdir)
    with prometheus(workdir) as server:
        yield HistoryServer(history, server.url, blocks)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Started here, waited for by ``mlflow_facts`` (so the fitting overlaps the start)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


_SAVE_DIABETES_MODEL = """
import sys
import mlflow.sklearn
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
X, y = load_diabetes(return_X_y=True)
model = Ridge(alpha=0.1).fit(X, y)
mlflow.sklearn.save_model(
    model, sys.argv[1], pip_requirements=["scikit-learn"], serialization_format="cloudpickle"
)
"""


@pytest.fixture(scope="session")
def diabetes_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow model (mlflow.sklearn.save_model of a Ridge fitted on load_diabetes), saved
    by a child process so mlflow's import stays out of the test process. cloudpickle, not
    MLflow's default skops: importing skops takes a model server about 3 s more to start."""
    target = tmp_path_factory.mktemp("diabetes-model") / "model"
    subprocess.run(
        [sys.executable, "-c", _SAVE_DIABETES_MODEL, str(target)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    return target
