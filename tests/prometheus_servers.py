"""Real servers for the Prometheus tests, all on 127.0.0.1.

- :class:`PrometheusServer`: the Debian ``prometheus`` binary as a plain process
  with its own config, TSDB directory and a free port, ready when ``/-/ready`` is.
- :class:`Exporter`: a tiny HTTP server whose OpenMetrics text the test sets;
  :class:`LivePrometheus` pairs it with a Prometheus scraping it every second
  and waits, after each change, until Prometheus has scraped the change.
- :class:`AuthProxy`: a reverse proxy that lets through only requests with the
  right bearer token (and records what it was sent), or answers with a fault.
- :class:`BlackHole`: a port that accepts connections and never answers.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
START_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def query(url: str, promql: str, at: float | None = None) -> Any:
    """The ``data`` of an instant query, straight over HTTP (not through the code under test)."""
    params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode(params)}") as answer:
        return json.load(answer)["data"]


class PrometheusServer:
    """``prometheus`` on 127.0.0.1 with a config written here; ``url`` once ready."""

    def __init__(self, workdir: Path, scrape_targets: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.scrape_targets = scrape_targets
        self.tsdb = workdir / "tsdb"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def log(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self, timeout: float = 30.0) -> None:
        config = self.workdir / "prometheus.yml"
        config.write_text(self._config())
        for _ in range(START_ATTEMPTS):
            port = free_port()
            with self.log.open("a") as log:
                self.process = subprocess.Popen(
                    [
                        "prometheus",
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.tsdb}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            self.url = f"http://127.0.0.1:{port}"
            if self._ready(timeout):
                return
        raise AssertionError(f"prometheus did not become ready; log:\n{self.log.read_text()}")

    def _ready(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # e.g. the port was taken between probing and binding: retry
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.1)
        self.stop()
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _config(self) -> str:
        timing = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        if not self.scrape_targets:
            return timing + "scrape_configs: []\n"
        targets = json.dumps(list(self.scrape_targets))
        return (
            timing + "scrape_configs:\n  - job_name: contract\n    static_configs:\n"
            f"      - targets: {targets}\n"
        )


@contextmanager
def prometheus(workdir: Path, scrape_targets: tuple[str, ...] = ()) -> Iterator[PrometheusServer]:
    server = PrometheusServer(workdir, scrape_targets)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def backfilled(workdir: Path, openmetrics: str) -> Path:
    """A TSDB holding ``openmetrics``, made by ``promtool tsdb create-blocks-from openmetrics``."""
    source = workdir / "history.om"
    source.write_text(openmetrics)
    tsdb = workdir / "blocks"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return tsdb


def copy_tsdb(source: Path, workdir: Path) -> None:
    """Blocks of ``source`` into ``workdir/tsdb`` (one TSDB directory per Prometheus)."""
    shutil.copytree(source, workdir / "tsdb")


# ---------------------------------------------------------------- HTTP helpers


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


class Exporter:
    """Serves whatever OpenMetrics text was last set, plus ``contract_generation``."""

    def __init__(self) -> None:
        self.text = ""
        self.generation = 0
        self.lock = threading.Lock()
        self.url = ""

    @contextmanager
    def running(self) -> Iterator[Exporter]:
        exporter = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                with exporter.lock:
                    body = (
                        f"{exporter.text}# TYPE contract_generation gauge\n"
                        f"contract_generation {exporter.generation}\n# EOF\n"
                    ).encode()
                self.send_response(200)
                self.send_header("Content-Type", OPENMETRICS)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        with serving(Handler) as server:
            self.url = f"127.0.0.1:{server.server_address[1]}"
            yield self

    def set(self, text: str) -> int:
        with self.lock:
            self.text = text
            self.generation += 1
            return self.generation


@dataclass
class LivePrometheus:
    """A Prometheus scraping an :class:`Exporter` every second."""

    server: PrometheusServer
    exporter: Exporter

    @property
    def url(self) -> str:
        return self.server.url

    def publish(self, openmetrics: str, timeout: float = 20.0) -> None:
        """Serve ``openmetrics`` (families, without ``# EOF``) and wait until it is scraped."""
        generation = self.exporter.set(openmetrics)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = query(self.url, "contract_generation")["result"]
            if result and float(result[0]["value"][1]) >= generation:
                return
            time.sleep(0.1)
        raise AssertionError(f"Prometheus did not scrape generation {generation} in {timeout}s")


class AuthProxy:
    """Forwards to ``upstream`` only with ``Authorization: Bearer <token>``; else 401.

    ``seen`` records every Authorization header received; ``fault`` (status,
    content type, body) answers every request instead of forwarding.
    """

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream = upstream
        self.token = token
        self.seen: list[str | None] = []
        self.fault: tuple[int, str, bytes] | None = None
        self.url = ""

    @contextmanager
    def running(self) -> Iterator[AuthProxy]:
        proxy = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                authorization = self.headers.get("Authorization")
                proxy.seen.append(authorization)
                if proxy.fault is not None:
                    self._answer(*proxy.fault)
                elif authorization != f"Bearer {proxy.token}":
                    self._answer(401, "text/plain", b"Unauthorized\n")
                else:
                    self._forward()

            def _forward(self) -> None:
                try:
                    with urllib.request.urlopen(proxy.upstream + self.path, timeout=30) as answer:
                        status, body, kind = answer.status, answer.read(), answer.headers
                except urllib.error.HTTPError as refused:
                    status, body, kind = refused.code, refused.read(), refused.headers
                self._answer(status, kind.get("Content-Type", "application/json"), body)

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        with serving(Handler) as server:
            self.url = f"http://127.0.0.1:{server.server_address[1]}"
            yield self


@contextmanager
def black_hole() -> Iterator[str]:
    """The URL of a port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
