"""The push webhook's limits for a public endpoint (``gitsource.webhook.Limits``).

Served for real on 127.0.0.1 (a second peer on 127.0.0.2): a peer over its token bucket gets
429 with ``Retry-After`` while another peer does not, and gets in again once the (injected)
clock has refilled its bucket; the buckets of at most ``max_peers`` peers are kept; requests
past ``max_concurrent`` in progress get 503 with ``Retry-After``; a client that sends its
headers, or its body, one byte at a time is cut off within the deadline; an over-long request
line, header or too many headers are refused with 400; none of these calls back. The limits
come from ``MODELROLLOUT_WEBHOOK_*`` settings through the wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

import ledger
from modelrollout import settings, wiring
from modelrollout.gitsource.git import GitRepositorySource
from modelrollout.gitsource.webhook import HOOK_PATH, Limits, PeerRateLimiter, WebhookServer

SECRET = "whsec-limits-2f9c"
PUSH = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": "https://h/r.git"}})
#: A short deadline, so a slow client is cut off quickly; the client itself is far slower.
DEADLINE = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Pushes:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.hold = False

    async def __call__(self, url: str, ref: str) -> None:
        self.calls += 1
        if self.hold:
            await self.release.wait()


def signed() -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), PUSH.encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": f"sha256={digest}",
    }


async def post(
    server: WebhookServer, peer: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(peer, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(server.url, data=PUSH, headers=headers or signed()) as answer,
    ):
        return answer.status, dict(answer.headers)


@pytest.fixture
def pushes() -> Pushes:
    return Pushes()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limits(**changes: Any) -> Limits:
    base: dict[str, Any] = {"rate_per_second": 1.0, "burst": 3, "timeout_seconds": DEADLINE}
    return Limits(**(base | changes))


@pytest_asyncio.fixture
async def hook(pushes: Pushes, clock: Clock) -> AsyncIterator[WebhookServer]:
    server = WebhookServer(SECRET, pushes, limits=limits(max_concurrent=2), clock=clock)
    async with server:
        yield server


@pytest.mark.asyncio
async def test_a_peer_over_its_rate_gets_429_with_retry_after_until_its_bucket_refills(
    hook: WebhookServer, pushes: Pushes, clock: Clock
) -> None:
    """Given a burst of 3 and 1 request a second, when one peer sends 5 at once, then 3
    are accepted and 2 refused with 429 and Retry-After (signed or not: the limit comes
    before the signature); another peer is not affected; a second later the first peer
    gets one more request in."""
    answers = [await post(hook) for _ in range(5)]
    ledger.bad_input("webhook request over the per-peer rate", 2)
    assert [status for status, _ in answers] == [202, 202, 202, 429, 429]
    assert answers[3][1]["Retry-After"] == "1"
    assert (await post(hook, headers={"X-GitHub-Event": "push"}))[0] == 429
    ledger.bad_input("webhook request over the per-peer rate", 1)
    assert (await post(hook, peer="127.0.0.2"))[0] == 202
    clock.now += 1.0
    assert (await post(hook))[0] == 202
    assert (await post(hook))[0] == 429
    ledger.bad_input("webhook request over the per-peer rate", 1)
    assert pushes.calls == 5


def test_the_limiter_remembers_at_most_max_peers() -> None:
    """Memory is bounded: 10,000 peers leave 100 buckets, the least recently seen gone."""
    clock = Clock()
    limiter = PeerRateLimiter(limits(burst=1, max_peers=100), clock)
    assert limiter.take("10.0.0.1") is None
    assert limiter.take("10.0.0.1") == pytest.approx(1.0)
    for n in range(10_000):
        limiter.take(f"10.1.{n // 256}.{n % 256}")
    assert len(limiter) == 100
    assert limiter.take("10.0.0.1") is None  # forgotten: a full bucket again


@pytest.mark.asyncio
async def test_requests_past_the_concurrency_limit_get_503(
    hook: WebhookServer, pushes: Pushes
) -> None:
    """Given two pushes in progress (their callback waits), when a third arrives, then it is
    refused with 503 and Retry-After at once; the two finish with 202 when released."""
    pushes.hold = True
    first = asyncio.create_task(post(hook))
    second = asyncio.create_task(post(hook, peer="127.0.0.2"))
    for _ in range(500):
        if pushes.calls == 2:
            break
        await asyncio.sleep(0.01)
    assert pushes.calls == 2
    status, headers = await post(hook, peer="127.0.0.3")
    ledger.bad_input("webhook request over the concurrency limit", 1)
    assert status == 503
    assert headers["Retry-After"] == "1"
    pushes.release.set()
    assert [(await first)[0], (await second)[0]] == [202, 202]
    assert pushes.calls == 2


async def trickle(port: int, head: bytes, then: bytes, every: float = 0.1) -> tuple[float, bytes]:
    """Send ``head`` at once, then ``then`` one byte every ``every`` seconds (far longer than
    the deadline in all); the seconds until the server answered or closed, and its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    answer = b""
    try:
        writer.write(head)
        await writer.drain()
        for byte in then:
            if reader.at_eof():
                break
            with contextlib.suppress(TimeoutError):
                answer += await asyncio.wait_for(reader.read(65536), timeout=every)
            if answer:
                break
            writer.write(bytes([byte]))
            await writer.drain()
        else:
            raise AssertionError("the server waited for the whole slow request")
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started, answer


@pytest.mark.asyncio
async def test_a_client_sending_its_headers_a_byte_at_a_time_is_cut_off(
    hook: WebhookServer, pushes: Pushes
) -> None:
    """Slowloris: headers that would take 20 s to arrive; the connection is closed within
    the 1 s deadline (plus scheduling slack), with nothing called."""
    head = f"POST {HOOK_PATH} HTTP/1.1\r\nHost: x\r\n".encode()
    taken, answer = await trickle(hook.port, head, b"X-Slow: " + b"a" * 200)
    ledger.bad_input("webhook client sending headers a byte at a time", 1)
    assert taken < DEADLINE + 4
    assert answer == b""
    assert pushes.calls == 0


@pytest.mark.asyncio
async def test_a_client_sending_its_body_a_byte_at_a_time_gets_408(
    hook: WebhookServer, pushes: Pushes
) -> None:
    head = (
        f"POST {HOOK_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(PUSH)}\r\n\r\n"
    ).encode()
    taken, answer = await trickle(hook.port, head, PUSH.encode() * 3)
    ledger.bad_input("webhook client sending its body a byte at a time", 1)
    assert taken < DEADLINE + 4
    assert answer.startswith(b"HTTP/1.1 408")
    assert pushes.calls == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        {"X-Big": "a" * 9000},
        {f"X-Many-{n}": "1" for n in range(100)},
    ],
    ids=["one header too long", "too many headers"],
)
async def test_oversized_headers_are_refused_with_400(
    hook: WebhookServer, pushes: Pushes, headers: dict[str, str]
) -> None:
    status, _ = await post(hook, headers=signed() | headers)
    ledger.bad_input("webhook request with oversized headers", 1)
    assert status == 400
    assert pushes.calls == 0


@pytest.mark.asyncio
async def test_an_overlong_request_line_is_refused_with_400(
    hook: WebhookServer, pushes: Pushes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port)
    writer.write(f"POST {HOOK_PATH}?{'q' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    ledger.bad_input("webhook request with an overlong request line", 1)
    assert re.match(rb"HTTP/1\.[01] 400 ", answer)
    assert pushes.calls == 0


def test_the_limits_come_from_the_settings_through_the_wiring(tmp_path: Path) -> None:
    env = {
        "MODELROLLOUT_WEBHOOK_ADDRESS": "127.0.0.1:0",
        "MODELROLLOUT_WEBHOOK_SECRET": SECRET,
        "MODELROLLOUT_WEBHOOK_RATE_PER_SECOND": "0.5",
        "MODELROLLOUT_WEBHOOK_BURST": "4",
        "MODELROLLOUT_WEBHOOK_MAX_CONCURRENT": "3",
        "MODELROLLOUT_WEBHOOK_TIMEOUT_SECONDS": "2.5",
    }
    server = wiring.webhook(settings.from_env(env), GitRepositorySource(tmp_path))
    assert server is not None
    assert server.limits == Limits(
        rate_per_second=0.5, burst=4, max_concurrent=3, timeout_seconds=2.5
    )
    assert settings.from_env({}).webhook_burst == Limits().burst


def test_limits_that_cannot_work_are_refused() -> None:
    for bad in ({"rate_per_second": 0}, {"burst": 0}, {"max_concurrent": 0}, {"max_headers": 1}):
        with pytest.raises(ValueError, match="webhook"):
            Limits(**bad)
