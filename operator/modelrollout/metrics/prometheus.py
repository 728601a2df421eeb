"""Prometheus as a metric provider: instant queries through prometheus-api-client.

Only ``PrometheusConnect`` is used (it needs ``requests`` alone; the client's
DataFrame helpers would pull in pandas, which the operator does not ship). Its
blocking calls run in a worker thread. What can go wrong is sorted into the
three :class:`~modelrollout.metrics.base.QueryError` kinds:

- :class:`NoData`: the query ran and matched nothing (``SampleProvider`` decides);
- :class:`Unavailable`: connection refused, no answer within the timeout, HTTP
  5xx (including Prometheus's own query timeout), refused credentials, an
  answer that is not Prometheus's API;
- :class:`BadQuery`: HTTP 400/422 with Prometheus's error text, or a result that
  is a range vector or a string.

Messages name the address (without any user:password part) and what went
wrong, never the bearer token. No retries: the operator measures again at the
next interval, and ``consecutiveErrorLimit`` decides how many failures in a row
are too many.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from modelrollout.clock import Clock
from modelrollout.metrics.base import BadQuery, QueryError, Sample, SampleProvider, Unavailable

#: Extra time the worker thread gets beyond the HTTP timeout before the wait is abandoned.
GRACE_SECONDS = 1.0
_MAX_ERROR_TEXT = 300
# prometheus-api-client 0.7 reports a non-200 answer as "HTTP Status Code <n> (<bytes repr>)".
_STATUS = re.compile(r"HTTP Status Code (\d{3}) \((.*)\)\Z", re.DOTALL)


class PrometheusProvider(SampleProvider):
    """Instant queries against one Prometheus.

    ``token`` is sent as ``Authorization: Bearer …`` (surrounding whitespace
    removed). With a ``clock``, queries are evaluated at its time (both arms of
    a comparison at the same instant, and tests at a known time); without one,
    at Prometheus's own "now".
    """

    def __init__(
        self,
        address: str,
        token: str | None = None,
        timeout_seconds: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self._shown = _without_userinfo(self.address)
        # A Secret made from a file often ends in a newline, which no header may carry.
        token = token.strip() if token else None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._client = PrometheusConnect(
            url=self.address,
            headers=headers,
            retry=Retry(total=0, read=False, redirect=False),
        )

    def __repr__(self) -> str:
        return f"PrometheusProvider({self._shown!r})"

    async def samples(self, query: str, timeout_seconds: float) -> list[Sample]:
        # Prometheus stops evaluating too (seconds as a plain number: it reads no "0.5s").
        params = {"timeout": f"{timeout_seconds:.3f}"}
        if self.clock is not None:
            params["time"] = f"{self.clock.now().timestamp():.3f}"
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(self._query, query, params, timeout_seconds),
                timeout_seconds + GRACE_SECONDS,
            )
        except TimeoutError as error:
            raise self._timed_out(timeout_seconds) from error
        return self._samples(result)

    async def is_online(self) -> bool:
        """Whether Prometheus answers a trivial query (with the credentials) in time."""
        try:
            samples = await self.samples("vector(1)", self.timeout_seconds)
        except QueryError:
            return False
        return [s.value for s in samples] == [1.0]

    def _query(self, query: str, params: dict[str, str], timeout_seconds: float) -> Any:
        try:
            return self._client.custom_query(query, params=params, timeout=timeout_seconds)
        except requests.Timeout as error:
            raise self._timed_out(timeout_seconds) from error
        except requests.ConnectionError as error:
            raise Unavailable(f"cannot connect to Prometheus at {self._shown}") from error
        except requests.JSONDecodeError as error:
            raise self._not_prometheus() from error
        except requests.RequestException as error:
            raise Unavailable(
                f"request to Prometheus at {self._shown} failed ({type(error).__name__})"
            ) from error
        except PrometheusApiClientException as error:
            raise self._refused(str(error)) from error
        except (ValueError, KeyError, TypeError) as error:
            raise self._not_prometheus() from error

    def _timed_out(self, timeout_seconds: float) -> Unavailable:
        return Unavailable(
            f"Prometheus at {self._shown} did not answer within {timeout_seconds:g}s"
        )

    def _not_prometheus(self) -> Unavailable:
        return Unavailable(f"{self._shown} did not answer like the Prometheus HTTP API")

    def _refused(self, text: str) -> QueryError:
        match = _STATUS.match(text)
        if match is None:
            return Unavailable(f"Prometheus at {self._shown} refused the query")
        status = int(match[1])
        error_type, error_text = _prometheus_error(match[2])
        detail = f": {error_text}" if error_text else ""
        if status in (400, 422):
            return BadQuery(f"Prometheus refused the query{detail}")
        if status in (401, 403):
            return Unavailable(
                f"Prometheus at {self._shown} refused the credentials (HTTP {status})"
            )
        if error_type == "timeout":
            return Unavailable(f"Prometheus at {self._shown} gave up on the query{detail}")
        return Unavailable(f"Prometheus at {self._shown} answered HTTP {status}{detail}")

    def _samples(self, result: Any) -> list[Sample]:
        """Samples from the ``data.result`` of an instant query (which drops ``resultType``)."""
        try:
            if not isinstance(result, list):
                raise self._not_prometheus()
            if len(result) == 2 and not isinstance(result[0], dict):
                # A scalar (or string) result: [time, "value"].
                try:
                    return [Sample(float(result[1]))]
                except ValueError:
                    raise BadQuery("query returned a string; it needs a number") from None
            samples = []
            for series in result:
                if "values" in series:
                    raise BadQuery(
                        "query returned a range vector; "
                        "give an instant vector (e.g. wrap the range in rate())"
                    )
                samples.append(Sample(float(series["value"][1]), dict(series["metric"])))
            return samples
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise self._not_prometheus() from error


def _prometheus_error(body_repr: str) -> tuple[str | None, str | None]:
    """``errorType`` and ``error`` from the body of a refused query, if it is Prometheus's JSON."""
    try:
        body = ast.literal_eval(body_repr)
        document = json.loads(body)
    except (ValueError, SyntaxError, TypeError):
        return None, None
    if not isinstance(document, dict):
        return None, None
    error_type, error = document.get("errorType"), document.get("error")
    text = str(error)[:_MAX_ERROR_TEXT] if error is not None else None
    return (str(error_type) if error_type is not None else None), text


def _without_userinfo(address: str) -> str:
    parts = urlsplit(address)
    if parts.username is None and parts.password is None:
        return address
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
