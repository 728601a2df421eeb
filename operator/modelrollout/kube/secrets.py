"""Secrets read through the Kubernetes API (values are never logged or echoed).

The body is read without the client's preloading: with it, the client logs every response
body at DEBUG (``kubernetes.client.rest``), which for a Secret is its data, so an operator
run with ``MODELROLLOUT_LOG_LEVEL=DEBUG`` would write every credential it reads to its log.
A read with no answer within ``request_timeout`` seconds, or a dropped connection, is a
:class:`SourceError` like a refusal: the pass carries on without the Secret and retries.
"""

from __future__ import annotations

import asyncio
import base64
import json

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout.errors import SourceError


class KubeSecrets:
    def __init__(self, api_client: client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self._core = client.CoreV1Api(api_client)
        self._timeout = request_timeout

    async def read(self, namespace: str, name: str) -> dict[str, str]:
        try:
            answer = await asyncio.to_thread(
                self._core.read_namespaced_secret,
                name,
                namespace,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        except urllib3.exceptions.HTTPError as error:
            raise SourceError(
                f"cannot read Secret {namespace}/{name}: {type(error).__name__}"
            ) from None
        except ApiException as error:
            if error.status == 404:
                raise SourceError(f"Secret {namespace}/{name} not found") from None
            raise SourceError(
                f"cannot read Secret {namespace}/{name}: HTTP {error.status}"
            ) from None
        try:
            body = answer.data
        finally:
            answer.release_conn()
        try:
            data = json.loads(body).get("data") or {}
            return {key: base64.b64decode(value).decode() for key, value in data.items()}
        except (ValueError, AttributeError, UnicodeDecodeError):
            raise SourceError(f"Secret {namespace}/{name} holds data that is not text") from None
