"""A ModelRollout's status written through the Kubernetes API, for passes kopf does not patch.

kopf applies a daemon's ``patch`` only when the daemon function returns; the scheduled passes
run inside one long-lived daemon per rollout, so they send their status patch here: the same
merge patch on the status subresource that kopf sends for a change handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout import api
from modelrollout.errors import ModelRolloutError

MERGE_PATCH = "application/merge-patch+json"


class StatusWriteError(ModelRolloutError):
    """The status patch was not accepted; the next pass sends it again."""


class KubeStatusWriter:
    def __init__(self, api_client: client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self._api = client.CustomObjectsApi(api_client)
        # A write the server never answers would hold the rollout's daemon, and every pass
        # after it, forever: give up after this long and let the next pass send it again.
        self._timeout = request_timeout

    async def patch(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """Merge ``status`` into the rollout's status; False when the rollout is gone."""
        try:
            await asyncio.to_thread(
                self._api.patch_namespaced_custom_object_status,
                api.GROUP,
                api.VERSION,
                namespace,
                api.ROLLOUT_PLURAL,
                name,
                {"status": dict(status)},
                _content_type=MERGE_PATCH,
                _request_timeout=self._timeout,
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise StatusWriteError(
                f"cannot write the status of {namespace}/{name}: {error.status} {error.reason}"
            ) from None
        except urllib3.exceptions.HTTPError as error:
            raise StatusWriteError(f"the Kubernetes API cannot be reached: {error}") from None
        return True
