"""The emulator's memory stays bounded in a long run: after thousands of create, patch and delete
cycles, kmock's request log is empty and the watch history and the audit ring are at or below
their limits (sizes of what grows with use, not RSS).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from modelrollout.sandbox.kubeapi.app import KubeApi

REPO = Path(__file__).resolve().parents[1]
CYCLES = 5000
WORKERS = 16
HISTORY_LIMIT, AUDIT_LIMIT = 2000, 1000


async def _cycles(session: aiohttp.ClientSession, url: str, worker: int, count: int) -> None:
    collection = f"{url}/api/v1/namespaces/default/configmaps"
    for i in range(count):
        name = f"w{worker}-{i}"
        async with session.post(collection, json={"metadata": {"name": name}}) as created:
            assert created.status == 201
        patch = {"data": {"cycle": str(i)}}
        headers = {"Content-Type": "application/merge-patch+json"}
        async with session.patch(f"{collection}/{name}", json=patch, headers=headers) as patched:
            assert patched.status == 200
        async with session.delete(f"{collection}/{name}") as deleted:
            assert deleted.status == 200


@pytest.mark.asyncio
async def test_many_write_cycles_leave_every_buffer_within_its_bound() -> None:
    async with (
        KubeApi(port=0, history_limit=HISTORY_LIMIT, audit_limit=AUDIT_LIMIT) as api,
        aiohttp.ClientSession() as session,
    ):
        before = api.handler.stats()
        share = CYCLES // WORKERS
        await asyncio.gather(
            *(_cycles(session, api.url, w, share + (w < CYCLES % WORKERS)) for w in range(WORKERS))
        )
        after = api.handler.stats()
    assert after["resourceVersion"] - before["resourceVersion"] == 3 * CYCLES
    assert after["requestLog"] == 0
    assert after["history"] == HISTORY_LIMIT
    assert after["audit"] == AUDIT_LIMIT
    assert after["objects"] == before["objects"]
    assert after["watchers"] == 0


@pytest.mark.xfail(
    strict=True, reason="vanilla kmock keeps every request it served; this proves the check bites"
)
@pytest.mark.asyncio
async def test_vanilla_kmock_fails_the_same_request_log_check() -> None:
    import kmock

    async with (
        kmock.KubernetesEmulator() as handler,
        kmock.Server(handler) as server,
        aiohttp.ClientSession() as session,
    ):
        for _ in range(300):
            async with session.get(str(server.url.with_path("/version"))) as answer:
                assert answer.status == 200
        assert len(handler._requests) == 0  # the same log the emulator keeps empty
