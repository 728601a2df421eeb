"""Secrets read through the Kubernetes API (values are never logged or echoed)."""

from __future__ import annotations

import asyncio
import base64
import binascii

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout.errors import SourceError


class KubeSecrets:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)

    async def read(self, namespace: str, name: str) -> dict[str, str]:
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                raise SourceError(f"Secret {namespace}/{name} not found") from None
            raise SourceError(
                f"cannot read Secret {namespace}/{name}: HTTP {error.status}"
            ) from None
        try:
            return {
                key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()
            }
        except (binascii.Error, UnicodeDecodeError):
            raise SourceError(f"Secret {namespace}/{name} holds data that is not text") from None
