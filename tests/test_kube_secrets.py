"""KubeSecrets: Secrets read from the API server, their values in no log line, even at DEBUG.

Against the session's Kubernetes API emulator: a Secret's data comes back decoded; with every
logger at DEBUG (``MODELROLLOUT_LOG_LEVEL=DEBUG``), no record holds the value or its base64
(the Kubernetes client logs whole response bodies at DEBUG unless the body is read without
preloading); a missing Secret is a SourceError naming it, data that is not text too.
"""

from __future__ import annotations

import base64
import logging

import pytest
from kubernetes import client

from modelrollout.errors import SourceError
from modelrollout.kube.secrets import KubeSecrets

VALUE = "kube-secret-value-0f3a9c71e5b2d846"


def create(api_client: client.ApiClient, namespace: str, data: dict[str, str]) -> None:
    body = {"metadata": {"name": "creds", "namespace": namespace}, "data": data}
    client.CoreV1Api(api_client).create_namespaced_secret(namespace, body)


@pytest.mark.asyncio
async def test_a_secret_is_read_decoded_and_logged_nowhere_even_at_debug(
    api_namespace: tuple[client.ApiClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    api_client, namespace = api_namespace
    encoded = base64.b64encode(VALUE.encode()).decode()
    create(api_client, namespace, {"token": encoded})
    caplog.set_level(logging.DEBUG)

    found = await KubeSecrets(api_client).read(namespace, "creds")

    assert found == {"token": VALUE}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert VALUE not in logged
    assert encoded not in logged


@pytest.mark.asyncio
async def test_a_missing_secret_or_one_that_is_not_text_is_a_source_error(
    api_namespace: tuple[client.ApiClient, str],
) -> None:
    api_client, namespace = api_namespace
    with pytest.raises(SourceError, match=f"Secret {namespace}/creds not found"):
        await KubeSecrets(api_client).read(namespace, "creds")
    create(api_client, namespace, {"blob": base64.b64encode(b"\xff\xfe").decode()})
    with pytest.raises(SourceError, match="holds data that is not text"):
        await KubeSecrets(api_client).read(namespace, "creds")
