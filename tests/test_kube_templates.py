"""KubeTemplates: MetricTemplates read from the API server as typed specs.

Against the session's Kubernetes API emulator with crds/ applied: every
example MetricTemplate comes back as the typed spec (defaults applied by the
server), a missing template is TemplateNotFound naming it (an InvalidSpec),
and a failing API server is a MetricsError with its status code.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from modelrollout import api
from modelrollout.errors import MetricsError
from modelrollout.metrics.base import TemplateNotFound
from modelrollout.metrics.kube_templates import KubeTemplates
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "deploy/examples").glob("metrictemplate-*.yaml"))


class Cluster:
    def __init__(self, api: KubeApiProcess, api_client: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.api_client = api_client
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)

    def create_template(self, document: dict[str, Any]) -> None:
        body = {**document, "metadata": {"name": document["metadata"]["name"]}}
        self.custom.create_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, api.TEMPLATE_PLURAL, body
        )


@pytest.fixture
def cluster(kube_api: KubeApiProcess) -> Iterator[Cluster]:
    api_client = config.new_client_from_config(config_file=str(kube_api.kubeconfig))
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
    yield Cluster(kube_api, api_client, namespace)
    client.CoreV1Api(api_client).delete_namespace(namespace)
    api_client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
async def test_an_example_template_reads_back_as_its_typed_spec(
    cluster: Cluster, path: Path
) -> None:
    document = yaml.safe_load(path.read_text())
    cluster.create_template(document)

    spec = await KubeTemplates(cluster.api_client).get(
        cluster.namespace, document["metadata"]["name"]
    )

    assert spec == api.read_template(document["spec"])
    assert spec.provider.prometheus.timeout == document["spec"]["provider"]["prometheus"].get(
        "timeout", "10s"
    )


@pytest.mark.asyncio
async def test_a_missing_template_is_not_found_by_name(cluster: Cluster) -> None:
    with pytest.raises(TemplateNotFound) as caught:
        await KubeTemplates(cluster.api_client).get(cluster.namespace, "no-such-template")

    assert str(caught.value) == f"MetricTemplate {cluster.namespace}/no-such-template not found"
    assert caught.value.reason == api.Reason.INVALID_SPEC


@pytest.mark.asyncio
async def test_a_failing_api_server_is_an_error_with_its_status(cluster: Cluster) -> None:
    cluster.api.inject_fault(
        verb="get",
        group=api.GROUP,
        resource=api.TEMPLATE_PLURAL,
        namespace=cluster.namespace,
        code=500,
    )

    with pytest.raises(MetricsError) as caught:
        await KubeTemplates(cluster.api_client).get(cluster.namespace, "success-rate")

    assert (
        str(caught.value)
        == f"cannot read MetricTemplate {cluster.namespace}/success-rate: HTTP 500"
    )
    assert not isinstance(caught.value, TemplateNotFound)
