"""Real git repositories and a real smart-HTTP git server for the git source tests.

``Origin`` is a bare repository in a temporary folder with a work clone that commits and
pushes through the ``git`` binary (fixed author and dates, no user configuration).
``GitHttpServer`` serves a folder of bare repositories with ``git http-backend`` (the CGI
program that ships with git) on 127.0.0.1, behind HTTP basic auth with one token, and
records every request it answers.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Alice Example",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice Example",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


def git(*args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run git (for setting up repositories in tests); its stdout, stripped."""
    done = subprocess.run(
        ["git", *map(str, args)],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": os.devnull, **GIT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed: {done.stderr}")
    return done.stdout.strip()


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.moment = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


class Origin:
    """A bare repository (``self.bare``) and a work clone that commits and pushes to it."""

    def __init__(self, root: Path, name: str = "models.git") -> None:
        self.bare = root / name
        self.work = root / f"{name}-work"
        git("init", "--quiet", "--bare", "--initial-branch=main", self.bare)
        git("init", "--quiet", "--initial-branch=main", self.work)
        git("remote", "add", "origin", self.bare, cwd=self.work)
        self._tick = 0

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(
        self,
        files: Mapping[str, str | bytes | None],
        message: str = "change",
        *,
        sign_with: Path | None = None,
        when: str | None = None,
        push: str | None = "main",
    ) -> str:
        """Write (None: delete) ``files``, commit them and push to ``push``; the commit id."""
        for name, content in files.items():
            path = self.work / name
            if content is None:
                git("rm", "--quiet", "-r", name, cwd=self.work)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
            git("add", name, cwd=self.work)
        return self._commit(message, sign_with=sign_with, when=when, push=push)

    def _commit(
        self, message: str, *, sign_with: Path | None, when: str | None, push: str | None
    ) -> str:
        self._tick += 1
        moment = when or f"2026-01-0{1 + self._tick % 9}T12:00:0{self._tick % 10}+02:00"
        dates = {"GIT_AUTHOR_DATE": moment, "GIT_COMMITTER_DATE": moment}
        signing = (
            ["-c", "gpg.format=ssh", "-c", f"user.signingkey={sign_with}"] if sign_with else []
        )
        sign = ["-S"] if sign_with else []
        git(
            *signing,
            "commit",
            "--quiet",
            "--allow-empty",
            *sign,
            "-m",
            message,
            cwd=self.work,
            env=dates,
        )
        commit = git("rev-parse", "HEAD", cwd=self.work)
        if push:
            self.push(push)
        return commit

    def symlink(self, name: str, target: str, message: str = "link") -> str:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
        git("add", name, cwd=self.work)
        return self._commit(message, sign_with=None, when=None, push="main")

    def gitlink(self, name: str, commit: str) -> str:
        """Commit a submodule entry (mode 160000) at ``name`` pointing at ``commit``."""
        git("update-index", "--add", "--cacheinfo", f"160000,{commit},{name}", cwd=self.work)
        return self._commit("submodule", sign_with=None, when=None, push="main")

    def push(self, branch: str = "main", *, force: bool = False) -> None:
        force_flag = ["--force"] if force else []
        git("push", "--quiet", *force_flag, "origin", f"HEAD:{branch}", cwd=self.work)

    def tag(self, name: str, commit: str = "HEAD", *, annotated: bool = False) -> None:
        args = ["-a", "-m", f"tag {name}"] if annotated else []
        git("tag", *args, name, commit, cwd=self.work)
        git("push", "--quiet", "origin", f"refs/tags/{name}", cwd=self.work)

    def orphan(self, files: Mapping[str, str], message: str = "rewrite") -> str:
        """Replace history with one unrelated commit and force-push it to main."""
        git("checkout", "--quiet", "--orphan", f"rewrite-{self._tick}", cwd=self.work)
        git("rm", "--quiet", "-r", "--cached", ".", cwd=self.work)
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            git("add", name, cwd=self.work)
        commit = self._commit(message, sign_with=None, when=None, push=None)
        self.push("main", force=True)
        return commit


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None


@dataclass
class _State:
    root: Path
    username: str
    token: str
    redirect_to: str | None = None
    #: Repositories (by name, e.g. ``models.git``) that answer every request with 503, as a
    #: git host in an outage does (the requests are still recorded).
    unavailable: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: ClassVar[_State]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read ``seen`` instead."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        state = self.state
        authorization = self.headers.get("Authorization")
        with state.lock:
            state.seen.append(Seen(self.command, self.path, authorization))
        body = self._body()
        if state.redirect_to is not None:
            self._reply(302, [("Location", state.redirect_to + self.path)], b"")
            return
        if any(self.path.startswith(f"/{name}/") for name in state.unavailable):
            self._reply(503, [("Retry-After", "1")], b"unavailable\n")
            return
        expected = base64.b64encode(f"{state.username}:{state.token}".encode()).decode()
        if authorization != f"Basic {expected}":
            self._reply(401, [("WWW-Authenticate", 'Basic realm="git"')], b"token required\n")
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(state.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": state.username,
            "REMOTE_ADDR": self.client_address[0],
        }
        if "Git-Protocol" in self.headers:
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if "Content-Encoding" in self.headers:
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        done = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self._reply(status, headers, payload)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            for _ in range(1_000_000):
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class GitHttpServer:
    """``git http-backend`` over HTTP on 127.0.0.1, serving the bare repositories in ``root``."""

    def __init__(self, root: Path, username: str, token: str) -> None:
        self.state = _State(root=root, username=username, token=token)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{name}"

    @property
    def seen(self) -> list[Seen]:
        with self.state.lock:
            return list(self.state.seen)

    def start(self) -> GitHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()
