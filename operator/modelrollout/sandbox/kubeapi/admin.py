"""The emulator's own endpoints (not Kubernetes), under ``/_emulator/``: an audit ring of the API
calls served and injected faults that answer the next matching calls with an error.

A fault answers with its ``code`` after ``delaySeconds``, except two kinds kube-apiserver's
clients meet on a real network: :data:`NO_ANSWER` holds the request for ``delaySeconds`` and
then drops the connection without a byte of answer (the client sees its own timeout, or a
reset), and 410 on a watch streams one ``ERROR 410 Expired`` event, as kube does when the
resourceVersion the client resumes from is too old.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from modelrollout.sandbox.kubeapi import errors

JSON = dict[str, Any]

#: A fault "code" that means: hold the request, then drop the connection without answering.
NO_ANSWER = 0
FAULT_CODES = (NO_ANSWER, 409, 410, 429, 500, 504)


@dataclass(frozen=True)
class Call:
    """An API call as RBAC sees it: the verb and what it is about."""

    user_agent: str
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str

    def entry(self, code: int) -> JSON:
        return {
            "userAgent": self.user_agent,
            "verb": self.verb,
            "group": self.group,
            "resource": self.resource,
            "subresource": self.subresource,
            "namespace": self.namespace,
            "name": self.name,
            "code": code,
        }


@dataclass
class Fault:
    verb: str
    group: str
    resource: str
    code: int
    count: int
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    delay_seconds: float = 0.0
    retry_after_seconds: int = 1
    #: Only calls whose User-Agent starts with this (one client among several).
    user_agent: str | None = None

    def matches(self, call: Call) -> bool:
        wanted = (self.verb, self.group, self.resource)
        if wanted != (call.verb, call.group, call.resource):
            return False
        if self.user_agent is not None and not call.user_agent.startswith(self.user_agent):
            return False
        return all(
            expected is None or expected == actual
            for expected, actual in (
                (self.subresource, call.subresource),
                (self.namespace, call.namespace),
                (self.name, call.name),
            )
        )

    def error(self, call: Call) -> errors.ApiError:
        if self.code == 409:
            return errors.conflict(call.group, call.resource, call.name)
        if self.code == 429:
            return errors.too_many_requests(self.retry_after_seconds)
        if self.code == 504:
            return errors.timeout()
        if self.code == 410:
            return errors.expired("injected fault: too old resource version")
        return errors.internal_error("injected fault")


class Faults:
    """Pending faults, first added first used."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, spec: Any) -> Fault:
        if not isinstance(spec, dict):
            raise errors.bad_request("a fault is an object")
        try:
            fault = Fault(
                verb=str(spec["verb"]),
                group=str(spec.get("group", "")),
                resource=str(spec["resource"]),
                code=int(spec["code"]),
                count=int(spec.get("count", 1)),
                subresource=spec.get("subresource"),
                namespace=spec.get("namespace"),
                name=spec.get("name"),
                delay_seconds=float(spec.get("delaySeconds", 0)),
                retry_after_seconds=int(spec.get("retryAfterSeconds", 1)),
                user_agent=spec.get("userAgent"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.bad_request(f"a fault needs verb, resource and code: {exc}") from exc
        if fault.code not in FAULT_CODES or fault.count < 1:
            raise errors.bad_request(f"code must be one of {FAULT_CODES} and count at least 1")
        self._faults.append(fault)
        return fault

    def take(self, call: Call) -> Fault | None:
        for fault in self._faults:
            if fault.matches(call):
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        self._faults.clear()

    def listing(self) -> list[JSON]:
        return [asdict(f) for f in self._faults]


class Audit:
    """The last ``limit`` API calls with their HTTP status codes (0: dropped unanswered)."""

    def __init__(self, limit: int = 50_000) -> None:
        self.entries: deque[JSON] = deque(maxlen=limit)

    def record(self, call: Call, code: int) -> None:
        self.entries.append(call.entry(code))

    def clear(self) -> None:
        self.entries.clear()
