"""Planted secrets: distinctive credentials the end-to-end suite hands the operator through
Secret references, and the scan that proves none of them reached an output.

The e2e tests plant each value where the operator really reads it (a registry, a MetricTemplate
or a git Secret, the webhook's HMAC key, notification URL files); files that hold a planted
value on purpose are written under :func:`plant_dir` only. Every process an e2e test starts
logs under pytest's basetemp; at the end of the session the API emulators' objects
(ModelRollouts with status, Events, InferenceServices, MetricTemplates) and the bodies the test
receivers got are dumped there too (:func:`dump_api`, :func:`dump_bodies`). Then
:class:`SecretScan` (registered by tests/conftest.py) reads every file of basetemp but
:func:`plant_dir` for every planted value, raw and as base64 (at each alignment, so a value
inside a larger encoded string is found too), URL-encoded and JSON-escaped; a hit fails the
session, printing the file and line.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

MLFLOW_TOKEN = "mlflow-tok-PLANTED-4d1c9e7a0b3f5286"
PROMETHEUS_TOKEN = "prom-bearer-PLANTED-93e0a6c2d7f1b458"
GIT_TOKEN = "git-https-PLANTED-b61f08d3c95a2e74"
NOTIFY_URL_TOKEN = "notify-url-PLANTED-2a7e5c1f9d04b836"
NOTIFY_SIGNING_KEY = "notify-hmac-PLANTED-5c0f7b2e8a91d364"
WEBHOOK_SECRET = "git-hmac-PLANTED-e3b9d6047a2c1f58"
#: The body is made up (base64 of text, not a key): git only hands it to ssh, which the
#: suite's https and file repositories never start.
SSH_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + "\n".join(
        base64.b64encode(f"planted ssh key line {n:02d} 7c41e9b0d2a6f853".encode()).decode()
        for n in range(4)
    )
    + "\n-----END OPENSSH PRIVATE KEY-----\n"
)
VALUES = {
    "MLflow token": MLFLOW_TOKEN,
    "Prometheus bearer token": PROMETHEUS_TOKEN,
    "git HTTPS token": GIT_TOKEN,
    "notification URL token": NOTIFY_URL_TOKEN,
    "notification signing key": NOTIFY_SIGNING_KEY,
    "git webhook HMAC secret": WEBHOOK_SECRET,
    "SSH private key": SSH_PRIVATE_KEY,
}
PLANT_DIR = "planted-secrets"
#: Lines of a multi-line value shorter than this are not searched alone (the key's armour).
MIN_PIECE = 16


def plant_dir(factory: pytest.TempPathFactory) -> Path:
    """The one folder of basetemp the scan skips: files that hold planted values on purpose."""
    folder = factory.getbasetemp() / PLANT_DIR
    folder.mkdir(exist_ok=True)
    return folder


def plant_file(factory: pytest.TempPathFactory, name: str, text: str) -> Path:
    path = plant_dir(factory) / name
    path.write_text(text, encoding="utf-8")
    return path


def _pieces(value: str) -> list[str]:
    lines = [line.strip() for line in value.splitlines()]
    whole = [value] if len(value.splitlines()) == 1 else []
    return whole + [line for line in lines if len(line) >= MIN_PIECE and "-----" not in line]


def _base64_forms(raw: bytes) -> Iterator[bytes]:
    """The base64 text of ``raw`` wherever it sits in a larger encoded string: for each of
    the three alignments, without the characters its neighbours would change."""
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        inner = encoded[4 if offset else 0 : -4]
        for form in (inner, inner.replace(b"+", b"-").replace(b"/", b"_")):
            if len(form) >= MIN_PIECE:
                yield form


def needles(values: dict[str, str] = VALUES) -> dict[bytes, str]:
    """Each byte string searched for, and what it is (``git HTTPS token (base64)``)."""
    found: dict[bytes, str] = {}
    for name, value in values.items():
        for piece in _pieces(value):
            raw = piece.encode()
            found.setdefault(raw, name)
            found.setdefault(quote(piece, safe="").encode(), f"{name} (URL-encoded)")
            found.setdefault(json.dumps(piece)[1:-1].encode(), f"{name} (JSON)")
            for form in _base64_forms(raw):
                found.setdefault(form, f"{name} (base64)")
        if "\n" in value:
            found.setdefault(json.dumps(value)[1:-1].encode(), f"{name} (JSON)")
    return found


@dataclass(frozen=True)
class Hit:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


@dataclass
class Report:
    files: int = 0
    size: int = 0
    values: int = 0
    hits: list[Hit] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"secrets scan: {self.files} files, {self.size} bytes, {self.values} planted values, "
            f"{len(self.hits)} found"
        )


def scan(root: Path, skip: Iterable[Path] = (), values: dict[str, str] = VALUES) -> Report:
    """Every regular file under ``root`` (symbolic links not followed, ``skip`` folders left
    out) searched for every form of every value."""
    wanted = needles(values)
    pattern = re.compile(b"|".join(re.escape(n) for n in sorted(wanted, key=len, reverse=True)))
    skipped = {path.resolve() for path in skip}
    report = Report(values=len(values))
    for path in _files(root, skipped):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        report.files += 1
        report.size += len(data)
        for match in pattern.finditer(data):
            line = data.count(b"\n", 0, match.start()) + 1
            report.hits.append(Hit(path, line, wanted[match.group()]))
    return report


def _files(root: Path, skipped: set[Path]) -> Iterator[Path]:
    folders = [root]
    while folders:
        folder = folders.pop()
        if folder.resolve() in skipped:
            continue
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                folders.append(entry)
            elif entry.is_file():
                yield entry


#: What an API emulator holds that the operator writes or that records what it did.
DUMPED = (
    "/apis/modelrollout.io/v1alpha1/modelrollouts",
    "/apis/modelrollout.io/v1alpha1/metrictemplates",
    "/apis/serving.kserve.io/v1beta1/inferenceservices",
    "/api/v1/events",
)


def dump_api(url: str, target: Path) -> None:
    """The emulator's objects at ``url`` (all namespaces), one JSON file per kind in
    ``target``; kinds it does not serve are left out."""
    target.mkdir(parents=True, exist_ok=True)
    for path in DUMPED:
        try:
            with urllib.request.urlopen(url + path, timeout=30) as answer:
                body = answer.read()
        except (urllib.error.URLError, OSError):
            continue
        (target / (path.rsplit("/", 1)[1] + ".json")).write_bytes(body)


def dump_bodies(target: Path, bodies: Iterable[bytes]) -> None:
    """What a test receiver got, one file per request, for the scan."""
    target.mkdir(parents=True, exist_ok=True)
    for n, body in enumerate(bodies):
        (target / f"{n:05d}.body").write_bytes(body)


def secret_reads(audit: list[dict[str, Any]], namespace: str, name: str) -> int:
    """How many times the emulator's audit saw a successful ``get`` of the Secret."""
    return sum(
        1
        for call in audit
        if (call["verb"], call["resource"], call["namespace"], call["name"], call["code"])
        == ("get", "secrets", namespace, name, 200)
    )


class SecretScan:
    """The pytest plugin: scans basetemp when the session ends, fails it on a hit, and
    prints the figures in the summary. ``root`` is set by a session fixture (conftest)."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.report: Report | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.root is None or not self.root.exists():
            return
        self.report = scan(self.root, skip=[self.root / PLANT_DIR])
        if self.report.hits:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.report is None:
            return
        terminalreporter.section("planted secrets")
        terminalreporter.write_line(self.report.line())
        for hit in self.report.hits:
            terminalreporter.write_line(f"LEAK {hit}", red=True)


SCAN = SecretScan()
