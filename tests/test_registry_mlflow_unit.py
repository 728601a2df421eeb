"""What the registry contract suite cannot reach: credentials, settings and HTTP failures.

Covers:
- per-client credentials: two registries with different credentials used at once each send
  their own (bearer token, basic auth) to a recording HTTP server on 127.0.0.1, and no
  ``MLFLOW_TRACKING_*`` environment variable is set;
- refused credentials and a server that never answers become clear registry errors, and no
  secret shows in a message or a repr;
- ``Credentials.from_mapping`` (short and MLflow names, conflicts), tracking URIs with
  credentials in them or of another scheme, ``parse_storage_map`` and ``from_settings``
  (the map, the credentials, the HTTP retry defaults it sets only when unset);
- gate cases the contract's facts do not hold: input schemas that change a type, make an
  optional input required, use tensors or differ in many ways; a stable run without the
  holdout metric, and NaN metrics.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from modelrollout.api import HoldoutGate
from modelrollout.errors import RegistryError
from modelrollout.registry.core import (
    InputSchema,
    RegistryUnreachableError,
    RunFacts,
    UnknownModelError,
    VersionFacts,
    holdout_gate,
    parse_storage_map,
    schema_gate,
)
from modelrollout.registry.mlflow import (
    HTTP_DEFAULTS,
    Credentials,
    MlflowRegistry,
    from_settings,
)

TOKEN = "tok-3f9a-secret"
USERNAME = "alice"
PASSWORD = "pw-7c1e-secret"
BASIC = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
#: Who may ask about which model: the model name decides the credentials the server wants.
WANTED = {"token-model": f"Bearer {TOKEN}", "basic-model": BASIC}


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in MLflow: 401 unless the request carries the model's credentials, then 404."""

    seen: ClassVar[list[tuple[str, str | None]]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_GET(self) -> None:
        name = parse_qs(urlsplit(self.path).query).get("name", [""])[0]
        auth = self.headers.get("Authorization")
        with self.lock:
            self.seen.append((name, auth))
        if auth != WANTED.get(name):
            self._answer(401, b"You are not authenticated.", "text/plain")
            return
        body = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"{name} not found"}
        self._answer(404, json.dumps(body).encode(), "application/json")

    def _answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")


def _mlflow_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_TRACKING_")}


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_retries")
async def test_two_registries_at_once_each_send_their_own_credentials(recorder: str) -> None:
    environment = _mlflow_environment()
    with_token = MlflowRegistry(recorder, token=TOKEN)
    with_password = MlflowRegistry(recorder, username=USERNAME, password=PASSWORD)

    results = await asyncio.gather(
        *(with_token.resolve("models:/token-model/1") for _ in range(5)),
        *(with_password.resolve("models:/basic-model/1") for _ in range(5)),
        return_exceptions=True,
    )

    # Every call got past authentication to "no such model".
    assert all(isinstance(r, UnknownModelError) for r in results), results
    assert set(_Recorder.seen) == set(WANTED.items())
    assert len(_Recorder.seen) == 20  # each: the version, then the model
    assert _mlflow_environment() == environment


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_retries")
async def test_refused_credentials_are_a_registry_error_without_the_secret(
    recorder: str,
) -> None:
    registry = MlflowRegistry(recorder, token="wrong-" + TOKEN)

    with pytest.raises(RegistryError, match="refused the credentials") as raised:
        await registry.resolve("models:/token-model/1")

    assert not isinstance(raised.value, UnknownModelError)
    assert TOKEN not in str(raised.value)
    assert TOKEN not in repr(registry)
    assert recorder in str(raised.value)


@pytest.mark.asyncio
@pytest.mark.usefixtures("no_retries")
async def test_a_server_that_never_answers_is_unreachable_after_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections queue up and are never accepted, so never answered
        registry = MlflowRegistry(f"http://127.0.0.1:{silent.getsockname()[1]}")

        with pytest.raises(RegistryUnreachableError, match="timed out"):
            await registry.resolve("models:/fraud/1")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"token": TOKEN}, Credentials(token=TOKEN)),
        ({"MLFLOW_TRACKING_TOKEN": TOKEN, "other": "x"}, Credentials(token=TOKEN)),
        ({"username": USERNAME, "password": PASSWORD}, Credentials(None, USERNAME, PASSWORD)),
        (
            {"MLFLOW_TRACKING_USERNAME": USERNAME, "MLFLOW_TRACKING_PASSWORD": PASSWORD},
            Credentials(None, USERNAME, PASSWORD),
        ),
        ({}, Credentials()),
    ],
)
def test_credentials_are_read_from_a_secrets_data(
    data: dict[str, str], expected: Credentials
) -> None:
    credentials = Credentials.from_mapping(data)

    assert credentials == expected
    assert TOKEN not in repr(credentials)
    assert PASSWORD not in repr(credentials)


@pytest.mark.parametrize(
    "data",
    [
        {"token": TOKEN, "username": USERNAME, "password": PASSWORD},
        {"username": USERNAME},
        {"password": PASSWORD},
    ],
)
def test_conflicting_or_half_credentials_are_refused_without_the_secret(
    data: dict[str, str],
) -> None:
    with pytest.raises(ValueError, match="MLflow credentials") as raised:
        Credentials.from_mapping(data)

    assert TOKEN not in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_a_tracking_uri_with_credentials_in_it_is_refused_without_them() -> None:
    with pytest.raises(ValueError, match="put them in the registry's Secret") as raised:
        MlflowRegistry(f"http://{USERNAME}:{PASSWORD}@mlflow:5000")

    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize("uri", ["file:///srv/mlruns", "sqlite:///mlflow.db", "mlflow:5000"])
def test_a_tracking_uri_must_be_http(uri: str) -> None:
    with pytest.raises(ValueError, match=r"http\(s\)://"):
        MlflowRegistry(uri)


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("", ()),
        (
            "mlflow-artifacts:/=s3://mlflow/,file:///srv/mlruns/=pvc://mlruns/",
            (("mlflow-artifacts:/", "s3://mlflow/"), ("file:///srv/mlruns/", "pvc://mlruns/")),
        ),
        (" gs://a/ = s3://b/ , ", (("gs://a/", "s3://b/"),)),
        ("https://h/x?a=b=s3://c/", (("https://h/x?a", "b=s3://c/"),)),
    ],
)
def test_a_storage_map_setting_is_read_in_order(
    text: str, pairs: tuple[tuple[str, str], ...]
) -> None:
    assert parse_storage_map(text) == pairs


@pytest.mark.parametrize("text", ["s3://mlflow/", "=s3://mlflow/", "mlflow-artifacts:/="])
def test_a_storage_map_entry_without_both_sides_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not <prefix>=<replacement>"):
        parse_storage_map(text)


@pytest.fixture
def http_settings_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of HTTP_DEFAULTS in the environment; whatever was there comes back afterwards."""
    for name in HTTP_DEFAULTS:
        monkeypatch.setenv(name, "recorded")  # so the undo knows the value before
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("http_settings_unset")
def test_from_settings_builds_the_registry_and_short_http_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

    registry = from_settings(
        "http://mlflow.mlflow.svc:5000",
        "mlflow-artifacts:/=s3://mlflow/",
        {"token": TOKEN},
    )

    assert registry.storage_map == (("mlflow-artifacts:/", "s3://mlflow/"),)
    assert registry.backend.location == "MLflow at http://mlflow.mlflow.svc:5000"
    assert TOKEN not in repr(registry)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"  # what was set stays


@pytest.mark.usefixtures("http_settings_unset")
def test_from_settings_without_credentials() -> None:
    registry = from_settings("https://mlflow.example", "", None)

    assert registry.storage_map == ()


def _schema(*columns: dict[str, object]) -> InputSchema:
    return InputSchema.from_mlflow(columns)


CANDIDATE = VersionFacts("fraud", "2", "mlflow-artifacts:/x", run_id="r2")
AGE = {"type": "double", "name": "age", "required": True}
TENSOR = {"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}


@pytest.mark.parametrize(
    ("candidate", "stable", "message"),
    [
        (
            _schema({**AGE, "type": "long"}),
            _schema(AGE),
            "input 'age' is long, the stable's schema has double",
        ),
        (
            _schema(AGE),
            _schema({**AGE, "required": False}),
            "input 'age' is required, the stable's schema made it optional",
        ),
        (
            _schema(TENSOR),
            _schema({**TENSOR, "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}),
            "its tensor inputs differ from the stable's",
        ),
        (
            _schema(*({"type": "double", "name": f"x{n}"} for n in range(5))),
            _schema(),
            "input 'x0' (double) is required, and the stable's callers do not send it; "
            "input 'x1' (double) is required, and the stable's callers do not send it; "
            "input 'x2' (double) is required, and the stable's callers do not send it; "
            "and 2 more",
        ),
        (_schema(), _schema(AGE), None),
        (_schema(TENSOR), _schema(TENSOR), None),
        (_schema({**AGE, "required": False}), _schema(), None),
    ],
)
def test_schema_gate_cases(
    candidate: InputSchema, stable: InputSchema, message: str | None
) -> None:
    result = schema_gate(CANDIDATE, candidate, "fraud v1", stable)

    assert result.passed is (message is None)
    if message is not None:
        assert result.message == message


@pytest.mark.parametrize(
    ("candidate", "stable", "passed", "words"),
    [
        ({"rmse": 0.4}, {}, True, "the stable's run has no rmse: nothing to compare with"),
        ({"rmse": 0.4}, {"rmse": float("nan")}, True, "nothing to compare with"),
        ({"rmse": float("nan")}, {"rmse": 0.4}, False, "has no metric rmse"),
        ({"rmse": 0.41}, {"rmse": 0.38}, False, "rmse 0.41 is worse than the stable's 0.38"),
        ({"rmse": 0.38}, {"rmse": 0.38}, True, "allowed regression 0"),
    ],
)
def test_holdout_gate_cases(
    candidate: dict[str, float], stable: dict[str, float], passed: bool, words: str
) -> None:
    result = holdout_gate(
        HoldoutGate("rmse"), CANDIDATE, RunFacts("r2", candidate), RunFacts("r1", stable), None
    )

    assert result.passed is passed
    assert words in result.message
