"""The push webhook: a signed push makes the next fetch of that repository happen at once.

``POST /hooks/git`` takes push events from GitHub, Gitea/Forgejo and GitLab:

- authentication, checked on the raw body before it is parsed: ``X-Hub-Signature-256:
  sha256=<hex>`` (GitHub, Gitea, Forgejo) or ``X-Gitea-Signature: <hex>``, both HMAC-SHA256 of
  the body with the shared secret; or GitLab's ``X-Gitlab-Token: <secret>``. Comparisons use
  :func:`hmac.compare_digest`. Missing or wrong: 401.
- the body is read up to ``max_body_bytes`` (413 above, without reading further);
- limits for a public endpoint (:class:`Limits`), checked before the body is read: a token
  bucket per peer address (429 with ``Retry-After``; the buckets of at most ``max_peers``
  peers are kept, least recently seen dropped first, so memory is bounded), at most
  ``max_concurrent`` requests in progress (503 with ``Retry-After``), a deadline for the
  request line and headers (the connection is closed) and for the body (408), and caps on
  the request line, each header and the number of headers (400, from aiohttp's parser);
- JSON (``application/json``) or GitHub's form encoding (``payload=<json>``); the repository
  URLs (``repository.clone_url``/``ssh_url``/``html_url``, GitLab's ``project.git_http_url``
  …) and ``ref`` are taken from it: anything unreadable is a 400;
- ``ping`` events answer 200; other non-push events 200 and are ignored;
- an accepted push calls ``on_push(repository_url, ref)`` once per repository (URL spellings
  of the same repository count once) and answers 202.

Nothing in the payload is trusted beyond "fetch this repository again": the commit and the
manifest always come from git itself, so a replayed or forged-but-signed push can only cause
an early fetch. ``GET /healthz`` answers 200. The secret never reaches a log line.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from modelrollout.gitsource.base import repository_key

log = logging.getLogger(__name__)

HOOK_PATH = "/hooks/git"
HEALTH_PATH = "/healthz"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

PushCallback = Callable[[str, str], Awaitable[None] | None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Limits:
    """What one peer, and all peers together, may ask of the webhook."""

    #: Requests a second each peer address may sustain, and the burst it may send at once.
    rate_per_second: float = 5.0
    burst: int = 50
    #: Peers whose buckets are remembered (least recently seen dropped first).
    max_peers: int = 1024
    #: Requests in progress at once, over all peers.
    max_concurrent: int = 8
    #: Seconds a client has to send its request line and headers, and then its body.
    timeout_seconds: float = 10.0
    #: Bytes of the request line and of each header; number of headers.
    max_header_bytes: int = 8190
    max_headers: int = 64

    def __post_init__(self) -> None:
        if not (self.rate_per_second > 0 and self.burst >= 1 and self.max_peers >= 1):
            raise ValueError("webhook rate limit: rate, burst and max_peers must be positive")
        if not (self.max_concurrent >= 1 and self.timeout_seconds > 0):
            raise ValueError("webhook limits: max_concurrent and timeout must be positive")
        if self.max_header_bytes < 256 or self.max_headers < 8:
            raise ValueError("webhook limits: header caps below 256 bytes or 8 headers")


class PeerRateLimiter:
    """A token bucket per peer: ``burst`` tokens, refilled at ``rate_per_second``."""

    def __init__(self, limits: Limits, clock: Clock = time.monotonic) -> None:
        self._rate = limits.rate_per_second
        self._burst = float(limits.burst)
        self._max_peers = limits.max_peers
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, peer: str) -> float | None:
        """None if ``peer`` may go on (one token spent); else seconds until it may."""
        now = self._clock()
        tokens, then = self._buckets.pop(peer, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[peer] = (tokens, now)
        while len(self._buckets) > self._max_peers:
            self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self._rate


_EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event", "X-Gitlab-Event")
_PUSH_EVENTS = frozenset({"push", "push hook", "tag push hook"})
_URL_FIELDS = {
    "repository": ("clone_url", "ssh_url", "html_url", "git_http_url", "git_ssh_url", "homepage"),
    "project": ("git_http_url", "git_ssh_url", "web_url"),
}


class BadPayloadError(ValueError):
    """The body is signed but is not a push payload this receiver understands."""


def create_app(
    secret: str | bytes,
    on_push: PushCallback,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    limits: Limits | None = None,
    clock: Clock = time.monotonic,
) -> web.Application:
    """The aiohttp application; ``secret`` is the webhook's shared secret (never empty).
    The header deadline and caps are the server's business (:class:`WebhookServer`)."""
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the webhook secret must not be empty")
    receiver = _Receiver(key, on_push, max_body_bytes, limits or Limits(), clock)
    app = web.Application()
    app.router.add_post(HOOK_PATH, receiver.handle)
    app.router.add_get(HEALTH_PATH, _healthz)
    return app


class WebhookServer:
    """``create_app`` served on ``host:port`` (port 0 picks a free one; see :attr:`port`)."""

    def __init__(
        self,
        secret: str | bytes,
        on_push: PushCallback,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        limits: Limits | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._limits = limits or Limits()
        self._app = create_app(
            secret, on_push, max_body_bytes=max_body_bytes, limits=self._limits, clock=clock
        )
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._bound: int | None = None

    @property
    def port(self) -> int:
        if self._bound is None:
            raise RuntimeError("the webhook server is not started")
        return self._bound

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}{HOOK_PATH}"

    async def start(self) -> None:
        limits = self._limits
        # A connection that has not sent a whole request line and headers when the keep-alive
        # deadline passes is closed: that bounds slow clients (slowloris) too.
        runner = web.AppRunner(
            self._app,
            access_log=None,
            keepalive_timeout=limits.timeout_seconds,
            max_line_size=limits.max_header_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        self._bound = int(runner.addresses[0][1])
        log.info("git webhook listening on %s:%s%s", self._host, self._bound, HOOK_PATH)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._bound = None

    async def __aenter__(self) -> WebhookServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


class _Receiver:
    def __init__(
        self, key: bytes, on_push: PushCallback, max_body_bytes: int, limits: Limits, clock: Clock
    ) -> None:
        self._key = key
        self._on_push = on_push
        self._max_body = max_body_bytes
        self._limits = limits
        self._rate = PeerRateLimiter(limits, clock)
        self._in_progress = 0

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.remote or "unknown"
        wait = self._rate.take(peer)
        if wait is not None:
            log.warning("git webhook from %s: over the rate limit", peer)
            return _answer(429, "too many requests", retry_after=wait)
        if self._in_progress >= self._limits.max_concurrent:
            log.warning("git webhook from %s: %d requests in progress", peer, self._in_progress)
            return _answer(503, "too many requests in progress", retry_after=1.0)
        self._in_progress += 1
        try:
            return await self._handle(request, peer)
        finally:
            self._in_progress -= 1

    async def _handle(self, request: web.Request, peer: str) -> web.Response:
        try:
            async with asyncio.timeout(self._limits.timeout_seconds):
                body = await _read_at_most(request, self._max_body)
        except TimeoutError:
            log.warning("git webhook from %s: body not received in time", peer)
            return _answer(408, "the body did not arrive in time")
        if body is None:
            log.warning("git webhook from %s: body above %d bytes", peer, self._max_body)
            return _answer(413, f"body above {self._max_body} bytes")
        if not self._authentic(request, body):
            log.warning("git webhook from %s: missing or wrong signature", peer)
            return _answer(401, "missing or wrong signature")
        event = next((request.headers[h] for h in _EVENT_HEADERS if h in request.headers), None)
        if event is not None and event.lower() == "ping":
            return _answer(200, "pong")
        if event is not None and event.lower() not in _PUSH_EVENTS:
            return _answer(200, f"ignored event {event[:64]!r}")
        try:
            urls, ref = push_of(_payload(request.content_type, body))
        except BadPayloadError as error:
            log.warning("git webhook from %s: %s", peer, error)
            return _answer(400, str(error))
        for url in urls:
            log.info("git webhook: push to %s at %s", repository_key(url), ref)
            try:
                outcome = self._on_push(url, ref)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("git webhook: handling the push to %s failed", repository_key(url))
                return _answer(500, "the push could not be handled")
        return _answer(202, "accepted", repositories=len(urls))

    def _authentic(self, request: web.Request, body: bytes) -> bool:
        digest = hmac.new(self._key, body, hashlib.sha256).hexdigest().encode()
        github = request.headers.get("X-Hub-Signature-256")
        if github is not None:
            scheme, _, given = github.partition("=")
            return scheme == "sha256" and hmac.compare_digest(digest, _bytes(given.strip()))
        gitea = request.headers.get("X-Gitea-Signature")
        if gitea is not None:
            return hmac.compare_digest(digest, _bytes(gitea.strip()))
        gitlab = request.headers.get("X-Gitlab-Token")
        if gitlab is not None:
            return hmac.compare_digest(self._key, _bytes(gitlab))
        return False


def _bytes(header: str) -> bytes:
    """A header value as bytes, whatever characters a client put in it."""
    return header.encode("utf-8", "surrogateescape")


def push_of(payload: Any) -> tuple[tuple[str, ...], str]:
    """The repository URLs (one per repository) and the ref of a push payload."""
    if not isinstance(payload, dict):
        raise BadPayloadError("the payload is not a JSON object")
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref:
        raise BadPayloadError("the payload has no ref")
    urls: dict[str, str] = {}
    for section, fields in _URL_FIELDS.items():
        block = payload.get(section)
        if not isinstance(block, dict):
            continue
        for name in fields:
            value = block.get(name)
            if isinstance(value, str) and value:
                urls.setdefault(repository_key(value), value)
    if not urls:
        raise BadPayloadError("the payload names no repository URL")
    return tuple(urls.values()), ref


def _payload(content_type: str, body: bytes) -> Any:
    try:
        if content_type == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
            (text,) = form.get("payload", [""])
            return json.loads(text)
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayloadError("the body is not a JSON push payload") from None


async def _read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to be longer than ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(
    status: int, message: str, retry_after: float | None = None, **extra: Any
) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
    body = {"status": status, "message": message, **extra}
    return web.json_response(body, status=status, headers=headers)


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")
