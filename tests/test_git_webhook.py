"""The git push webhook: signed pushes call back, everything else is refused.

Covers ``modelrollout.gitsource.webhook`` served for real on 127.0.0.1: a GitHub push with a
valid ``X-Hub-Signature-256`` calls ``on_push`` once per repository and answers 202 (JSON
and form-encoded bodies, Gitea's and GitLab's headers and payloads too); a missing, wrong or
malformed signature answers 401 and calls nothing; a body over the limit answers 413 (with
and without Content-Length); a signed body that is not a push payload answers 400; ping and
other events do not call back; the comparison goes through ``hmac.compare_digest``; the
secret never appears in the log; and a push wired to ``GitRepositorySource.invalidate``
makes the next fetch see the new commit at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio

from gitrepos import FakeClock, Origin
from modelrollout import api
from modelrollout.gitsource import webhook
from modelrollout.gitsource.git import GitRepositorySource
from modelrollout.gitsource.webhook import WebhookServer, create_app

SECRET = "whsec-It5A-Shared-S3cret"
LIMIT = 4096

GITHUB_PUSH = {
    "ref": "refs/heads/main",
    "after": "0" * 40,
    "repository": {
        "full_name": "ml/models",
        "clone_url": "https://github.com/ml/models.git",
        "ssh_url": "git@github.com:ml/models.git",
        "html_url": "https://github.com/ml/models",
    },
}
GITLAB_PUSH = {
    "object_kind": "push",
    "ref": "refs/heads/main",
    "project": {
        "git_http_url": "https://gitlab.example.com/ml/models.git",
        "git_ssh_url": "git@gitlab.example.com:ml/models.git",
        "web_url": "https://gitlab.example.com/ml/models",
    },
}


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Pushes:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, url: str, ref: str) -> None:
        self.calls.append((url, ref))


@pytest.fixture
def pushes() -> Pushes:
    return Pushes()


@pytest_asyncio.fixture
async def hook(pushes: Pushes) -> AsyncIterator[WebhookServer]:
    async with WebhookServer(SECRET, pushes, host="127.0.0.1", max_body_bytes=LIMIT) as server:
        yield server


async def post(
    server: WebhookServer, body: bytes, headers: dict[str, str], **options: Any
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url, data=body, headers=headers, **options) as response,
    ):
        return response.status, await response.json()


def github(payload: Any, event: str = "push") -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": sign(body),
    }


@pytest.mark.asyncio
async def test_a_signed_github_push_calls_back_once_per_repository(
    hook: WebhookServer, pushes: Pushes
) -> None:
    body, headers = github(GITHUB_PUSH)

    status, answer = await post(hook, body, headers)

    assert (status, answer["repositories"]) == (202, 1)
    assert pushes.calls == [("https://github.com/ml/models.git", "refs/heads/main")]


@pytest.mark.asyncio
async def test_a_form_encoded_github_push_is_accepted(hook: WebhookServer, pushes: Pushes) -> None:
    body = urlencode({"payload": json.dumps(GITHUB_PUSH)}).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": sign(body),
    }

    status, _ = await post(hook, body, headers)

    assert status == 202
    assert len(pushes.calls) == 1


@pytest.mark.asyncio
async def test_gitea_and_gitlab_pushes_are_accepted(hook: WebhookServer, pushes: Pushes) -> None:
    body = json.dumps(GITHUB_PUSH).encode()
    gitea = {"X-Gitea-Event": "push", "X-Gitea-Signature": sign(body).removeprefix("sha256=")}
    lab_body = json.dumps(GITLAB_PUSH).encode()
    gitlab = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}

    assert (await post(hook, body, gitea))[0] == 202
    assert (await post(hook, lab_body, gitlab))[0] == 202

    assert [url for url, _ in pushes.calls] == [
        "https://github.com/ml/models.git",
        "https://gitlab.example.com/ml/models.git",
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": sign(b"another body")},
        {"X-Hub-Signature-256": sign(json.dumps(GITHUB_PUSH).encode(), "wrong secret")},
        {"X-Hub-Signature-256": "sha1=" + "0" * 40},
        {"X-Hub-Signature-256": "sha256="},
        {"X-Hub-Signature-256": "garbage"},
        {"X-Hub-Signature-256": "sha256=\u00e9t\u00e9"},
        {"X-Gitea-Signature": "00"},
        {"X-Gitlab-Token": "wrong secret"},
        {"X-Hub-Signature": "sha1=" + "0" * 40},
    ],
    ids=[
        "missing",
        "other-body",
        "other-secret",
        "sha1",
        "empty",
        "garbage",
        "not-ascii",
        "gitea-wrong",
        "gitlab-wrong",
        "github-sha1-header-only",
    ],
)
async def test_a_missing_or_wrong_signature_is_401_and_calls_nothing(
    hook: WebhookServer, pushes: Pushes, headers: dict[str, str]
) -> None:
    body = json.dumps(GITHUB_PUSH).encode()

    status, _ = await post(hook, body, {"X-GitHub-Event": "push", **headers})

    assert status == 401
    assert pushes.calls == []


@pytest.mark.asyncio
async def test_a_body_over_the_limit_is_413_with_or_without_a_length(
    hook: WebhookServer, pushes: Pushes
) -> None:
    payload = {**GITHUB_PUSH, "padding": "x" * LIMIT}
    body, headers = github(payload)

    assert (await post(hook, body, headers))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    status, _ = await post(hook, chunks(), headers)  # type: ignore[arg-type]
    assert status == 413
    assert pushes.calls == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "payload",
    [
        [GITHUB_PUSH],
        {"repository": GITHUB_PUSH["repository"]},
        {"ref": "refs/heads/main"},
        {"ref": "refs/heads/main", "repository": {"name": "models"}},
        {"ref": 7, "repository": GITHUB_PUSH["repository"]},
    ],
    ids=["list", "no-ref", "no-repository", "no-url", "ref-not-a-string"],
)
async def test_a_signed_body_that_is_not_a_push_is_400(
    hook: WebhookServer, pushes: Pushes, payload: Any
) -> None:
    body, headers = github(payload)

    assert (await post(hook, body, headers))[0] == 400
    assert pushes.calls == []


@pytest.mark.asyncio
async def test_a_signed_body_that_is_not_json_is_400(hook: WebhookServer, pushes: Pushes) -> None:
    body = b"{not json"
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(body)}

    assert (await post(hook, body, headers))[0] == 400
    assert pushes.calls == []


@pytest.mark.asyncio
@pytest.mark.parametrize("event", ["ping", "pull_request", "release"])
async def test_ping_and_other_events_do_not_call_back(
    hook: WebhookServer, pushes: Pushes, event: str
) -> None:
    body, headers = github({"zen": "Keep it logically awesome."}, event=event)

    assert (await post(hook, body, headers))[0] == 200
    assert pushes.calls == []


@pytest.mark.asyncio
async def test_a_failing_callback_is_500(pushes: Pushes) -> None:
    def broken(url: str, ref: str) -> None:
        raise RuntimeError("wake-up failed")

    async with WebhookServer(SECRET, broken) as server:
        body, headers = github(GITHUB_PUSH)
        assert (await post(server, body, headers))[0] == 500


@pytest.mark.asyncio
async def test_health_answers_ok(hook: WebhookServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{hook.port}/healthz") as response,
    ):
        assert (response.status, await response.text()) == (200, "ok")


@pytest.mark.asyncio
async def test_the_signature_is_compared_in_constant_time(
    hook: WebhookServer, pushes: Pushes, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhook.hmac, "compare_digest", spy)
    body, headers = github(GITHUB_PUSH)

    assert (await post(hook, body, headers))[0] == 202
    assert (await post(hook, body, {**headers, "X-Hub-Signature-256": sign(b"x")}))[0] == 401
    assert len(compared) == 2


@pytest.mark.asyncio
async def test_the_secret_never_reaches_the_log(
    hook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body, headers = github(GITHUB_PUSH)
    await post(hook, body, headers)
    await post(hook, body, {"X-Gitlab-Token": SECRET + "x"})
    await post(hook, body, {"X-Gitlab-Token": SECRET})

    assert "push to github.com/ml/models" in caplog.text
    assert SECRET not in caplog.text


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        create_app("", Pushes())


@pytest.mark.asyncio
async def test_a_push_wired_to_invalidate_makes_the_next_fetch_see_the_new_commit(
    tmp_path: Path,
) -> None:
    """Given a rollout polling hourly, when the repository's push arrives, the next fetch runs."""
    origin = Origin(tmp_path / "server")
    origin.commit({"models/fraud.yaml": "modelUri: models:/fraud/1\n"})
    source = GitRepositorySource(tmp_path / "cache", clock=FakeClock())
    spec = api.GitSource(repository=origin.url, path="models/fraud.yaml", interval="1h")
    await source.fetch(spec)
    newer = origin.commit({"models/fraud.yaml": "modelUri: models:/fraud/2\n"})

    def on_push(url: str, ref: str) -> None:
        source.invalidate(url)

    async with WebhookServer(SECRET, on_push) as server:
        payload = {"ref": "refs/heads/main", "repository": {"clone_url": origin.url}}
        body, headers = github(payload)
        assert (await post(server, body, headers))[0] == 202

    revision = await source.fetch(spec)
    assert (revision.commit, revision.model_uri) == (newer, "models:/fraud/2")
