"""MetricTemplate objects, read from the Kubernetes API.

The synchronous ``kubernetes`` client runs in a worker thread. A template that
does not exist is a :class:`TemplateNotFound` naming it; one whose spec the
typed API cannot read is a :class:`TemplateError` with the field path. A read
the API server refuses, does not answer within ``request_timeout`` seconds or
drops is a :class:`MetricsError`: that measurement errs, the rollout goes on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout import api, serde
from modelrollout.errors import MetricsError
from modelrollout.metrics.base import TemplateNotFound
from modelrollout.templates import TemplateError

#: The key of a MetricTemplate's Secret (``provider.prometheus.secretRef``) that holds
#: the Prometheus bearer token when ``secretRef.key`` is unset.
DEFAULT_TOKEN_KEY = "token"


class KubeTemplates:
    """A :class:`~modelrollout.metrics.base.TemplateSource` over the API server."""

    def __init__(self, api_client: client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self._objects = client.CustomObjectsApi(api_client)
        self._timeout = request_timeout

    async def get(self, namespace: str, name: str) -> api.MetricTemplateSpec:
        where = f"MetricTemplate {namespace}/{name}"
        try:
            found: dict[str, Any] = await asyncio.to_thread(
                self._objects.get_namespaced_custom_object,
                api.GROUP,
                api.VERSION,
                namespace,
                api.TEMPLATE_PLURAL,
                name,
                _request_timeout=self._timeout,
            )
        except urllib3.exceptions.HTTPError as error:
            raise MetricsError(f"cannot read {where}: {type(error).__name__}") from None
        except ApiException as error:
            if error.status == 404:
                raise TemplateNotFound(f"{where} not found") from None
            raise MetricsError(f"cannot read {where}: HTTP {error.status}") from None
        try:
            return api.read_template(found.get("spec"))
        except serde.SpecError as error:
            raise TemplateError(f"{where}: {error}") from None
