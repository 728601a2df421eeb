"""A rollout's events, posted once each even when the pass that made them runs twice.

A pass posts its events before its status is written. An operator killed in between runs the
same pass again after its restart, from the older status, and would post the same events
again. Each event is therefore created under a name derived from what made it: the rollout's
uid, where the rollout stood when the pass started (the handlers say which fields), and what
the event says. The second create of the same event is answered 409 AlreadyExists, which
means it is posted. The same event from the same standing is posted once, as kube-apiserver's
own clients aggregate repeats.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout import api

log = logging.getLogger(__name__)

COMPONENT = "modelrollout"
#: An Event's message is cut here, as kube-apiserver's own clients do (1 KiB).
MAX_MESSAGE = 1024
#: Room for the name's hash suffix within a 253-character object name.
_NAME_ROOM = 253 - 1 - 20
#: Attempts for an answer that may succeed later (429, 5xx, timeouts), and the first pause.
ATTEMPTS = 3
FIRST_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True)
class Involved:
    """The rollout an event is about."""

    namespace: str
    name: str
    uid: str


def event_name(involved: Involved, origin: Mapping[str, Any], place: object, reason: str) -> str:
    """The event's name: the same for the same rollout, origin, place and reason.

    ``origin`` is what the pass started from (its status, the generation); fields set to null
    count as absent, as they are once a merge patch has written them.
    """
    key = [involved.uid, _present(origin), place, reason]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return f"{involved.name[:_NAME_ROOM]}.{digest[:20]}"


def _present(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _present(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_present(v) for v in value]
    return value


class KubeEvents:
    def __init__(self, api_client: client.ApiClient, *, request_timeout: float = 30.0) -> None:
        self._core = client.CoreV1Api(api_client)
        self._timeout = request_timeout

    async def post(
        self, involved: Involved, name: str, kind: str, reason: str, message: str
    ) -> bool:
        """Create the event ``name``; True once it exists (posted now or before)."""
        # Microseconds, as kopf sends them: the events of one pass keep their order.
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": involved.namespace},
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": api.ROLLOUT_KIND,
                "name": involved.name,
                "namespace": involved.namespace,
                "uid": involved.uid,
            },
            "type": kind,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        pause = FIRST_BACKOFF_SECONDS
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await asyncio.to_thread(
                    self._core.create_namespaced_event,
                    involved.namespace,
                    body,
                    _request_timeout=self._timeout,
                )
                return True
            except ApiException as error:
                if error.status == 409:
                    return True
                retriable = error.status == 429 or error.status >= 500
                problem = f"HTTP {error.status}"
            except urllib3.exceptions.HTTPError as error:
                retriable, problem = True, type(error).__name__
            if not retriable or attempt == ATTEMPTS:
                log.warning(
                    "[%s/%s] event %s not posted: %s",
                    involved.namespace, involved.name, reason, problem,
                )  # fmt: skip
                return False
            await asyncio.sleep(pause)
            pause *= 2
        return False
