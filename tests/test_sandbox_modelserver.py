"""The sandbox's model server and the runtime that starts one per revision.

Real processes on 127.0.0.1: ``python -m modelrollout.sandbox.modelserver`` serving a saved
sklearn MLflow model on KServe's v1 protocol (readiness, predictions, loopback-only binding,
each injected fault; a full error rate is covered through the router in
test_sandbox_router.py), and :class:`ProcessRuntime` starting, probing, retiring and starting
again a revision's server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelrollout.sandbox.kserve.processes import ModelSource, ProcessRuntime, free_port

# The first rows of load_diabetes (its features are centred and scaled).
ROWS = [
    [0.038076, 0.050680, 0.061696, 0.021872, -0.044223, -0.034821, -0.043401, -0.002592,
     0.019907, -0.017646],
    [-0.001882, -0.044642, -0.051474, -0.026328, -0.008449, -0.019163, 0.074412, -0.039493,
     -0.068332, -0.092204],
]  # fmt: skip
START_SECONDS = 60.0


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _predict(base: str, name: str, rows: list[list[float]]) -> tuple[int, Any, float]:
    request = urllib.request.Request(
        f"{base}/v1/models/{name}:predict",
        data=json.dumps({"instances": rows}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, body = error.code, json.loads(error.read())
    return status, body, time.perf_counter() - started


def _wait_ready(base: str, name: str, process: subprocess.Popen[bytes]) -> float:
    """Seconds until ``GET /v1/models/NAME`` says ready (bounded; fails if the server died)."""
    started = time.monotonic()
    while time.monotonic() - started < START_SECONDS:
        assert process.poll() is None, "the model server exited"
        try:
            if _get(f"{base}/v1/models/{name}") == (200, {"name": name, "ready": True}):
                return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)  # waiting on a real process, not making time pass
    raise AssertionError(f"{name} not ready within {START_SECONDS} s")


class Server:
    def __init__(self, model_dir: Path, log: Path, *flags: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelrollout.sandbox.modelserver",
                "--model-dir",
                str(model_dir),
                "--name",
                "diabetes",
                "--port",
                str(self.port),
                *flags,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.start_seconds = 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def servers(
    diabetes_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """A plain server and a faulty one (half the requests fail, +100 ms, +1000), started
    together."""
    logs = tmp_path_factory.mktemp("modelserver-logs")
    plain = Server(diabetes_model_dir, logs / "plain.log")
    faulty = Server(
        diabetes_model_dir,
        logs / "faulty.log",
        "--error-rate",
        "0.5",
        "--extra-latency-ms",
        "100",
        "--shift",
        "1000",
        "--seed",
        "7",
    )
    try:
        for server in (plain, faulty):
            server.start_seconds = _wait_ready(server.base, "diabetes", server.process)
        yield plain, faulty
    finally:
        faulty.process.terminate()  # both stop at once
        plain.stop()
        faulty.stop()


def _listening(port: int) -> set[str]:
    """Local addresses listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_a_loaded_server_is_ready_and_predicts(servers: tuple[Server, Server]) -> None:
    plain, _ = servers
    # Given a server that has loaded its model
    assert _get(f"{plain.base}/v1/models/diabetes") == (200, {"name": "diabetes", "ready": True})
    # When it predicts two rows
    status, body, _ = _predict(plain.base, "diabetes", ROWS)
    # Then it answers one regression value each, in load_diabetes' range
    assert status == 200
    assert len(body["predictions"]) == 2
    assert all(25 < value < 350 for value in body["predictions"])
    print(f"model server start: {plain.start_seconds:.2f} s")


def test_an_unknown_model_is_not_found(servers: tuple[Server, Server]) -> None:
    plain, _ = servers
    assert _get(f"{plain.base}/v1/models/other")[0] == 404


def test_the_server_listens_on_loopback_only(servers: tuple[Server, Server]) -> None:
    for server in servers:
        # 0100007F is 127.0.0.1 in /proc/net/tcp's little-endian hex
        assert _listening(server.port) == {"0100007F"}


def test_the_faults_shift_delay_and_fail_predictions(servers: tuple[Server, Server]) -> None:
    plain, faulty = servers
    _, expected, _ = _predict(plain.base, "diabetes", ROWS)
    outcomes = [_predict(faulty.base, "diabetes", ROWS) for _ in range(10)]
    statuses = [status for status, _, _ in outcomes]
    # half the requests fail (seeded), the others are shifted by 1000
    assert 0 < statuses.count(500) < 10
    assert set(statuses) == {200, 500}
    for status, body, _ in outcomes:
        if status == 200:
            shifted = [v - 1000 for v in body["predictions"]]
            assert shifted == pytest.approx(expected["predictions"])
    # every request, failed or not, waits the extra 100 ms
    assert min(seconds for _, _, seconds in outcomes) >= 0.1


def test_the_runtime_starts_probes_retires_and_starts_again(
    diabetes_model_dir: Path, tmp_path: Path
) -> None:
    asyncio.run(_runtime_lifecycle(diabetes_model_dir, tmp_path))


async def _runtime_lifecycle(model_dir: Path, run_dir: Path) -> None:
    uris: list[str] = []

    def resolve(uri: str) -> ModelSource:
        uris.append(uri)
        return ModelSource(model_dir)

    spec = {"model": {"modelFormat": {"name": "mlflow"}, "storageUri": "s3://bucket/m/1"}}
    key = ("ns", "diabetes", "diabetes-predictor-00001")
    runtime = ProcessRuntime(resolve, run_dir, start_timeout=START_SECONDS)
    try:
        # A revision without a storage URI has nothing to serve: not ready, nothing started
        assert await runtime.ensure("ns", "diabetes", "empty-00001", {"model": {}}) is False
        assert runtime.running == set()
        # Given a runtime asked for a revision: it starts a server and is not ready at once
        assert await runtime.ensure(*key, spec) is False
        assert uris == ["s3://bucket/m/1"]
        assert runtime.endpoints() == {}
        # When it is asked again until ready (bounded)
        ready = False
        for _ in range(int(START_SECONDS * 10)):
            if ready := await runtime.ensure(*key, spec):
                break
            await asyncio.sleep(0.1)  # waiting on a real process
        # Then the endpoint serves predictions, and the one process stays
        assert ready
        (url,) = runtime.endpoints().values()
        assert (await asyncio.to_thread(_predict, url, "diabetes", ROWS))[0] == 200
        assert uris == ["s3://bucket/m/1"]
        assert (run_dir / "ns.diabetes-predictor-00001.log").stat().st_size > 0
        # When the revision retires, its server is gone
        port = int(url.rsplit(":", 1)[1])
        await runtime.retire(*key)
        assert runtime.running == set()
        assert runtime.endpoints() == {}
        assert _listening(port) == set()
        await runtime.retire(*key)  # retiring twice is harmless
    finally:
        await runtime.close()
    # And a new runtime (a restarted controller) simply starts it again
    again = ProcessRuntime(resolve, run_dir, start_timeout=START_SECONDS)
    try:
        assert await again.ensure(*key, spec) is False
        assert again.running == {key}
    finally:
        await again.close()
    assert again.running == set()
