"""The planted-secrets scan (tests/planted.py) finds what it must, so a clean run means something.

Given a tree holding planted values in the forms a leak takes (raw in a log line, base64 inside
a larger encoded string such as an HTTP basic-auth header, URL-encoded, a private key's line
JSON-escaped inside an object), when it is scanned, then each is found with its file and line;
the skipped folder (where tests plant values on purpose) and symbolic links are not read; a
clean tree has no hit; and the session fails and says so when the scan finds one.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

import planted


@pytest.fixture
def tree(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A fresh folder inside the plant folder: these tests write planted values on purpose,
    and the session's own scan must not count them as leaks."""
    folder = planted.plant_dir(tmp_path_factory) / re.sub(r"\W", "-", request.node.name)
    folder.mkdir()
    return folder


def test_each_form_of_a_planted_value_is_found_with_its_file_and_line(tree: Path) -> None:
    logs = tree / "logs"
    logs.mkdir()
    (logs / "operator.log").write_text(f"start\nfetching with {planted.GIT_TOKEN}\n")
    basic = base64.b64encode(f"x-access-token:{planted.GIT_TOKEN}".encode()).decode()
    (logs / "headers.txt").write_text(f"\n\nAuthorization: Basic {basic}\n")
    url = "https://hooks.example/" + quote(planted.NOTIFY_URL_TOKEN + "/x y", safe="")
    (logs / "urls.txt").write_text(url)
    (tree / "objects.json").write_text(json.dumps({"message": planted.SSH_PRIVATE_KEY}))
    (tree / "clean.log").write_text("nothing to see\n" * 1000)

    report = planted.scan(tree)

    found = sorted((hit.path.name, hit.line, hit.what) for hit in report.hits)
    assert ("operator.log", 2, "git HTTPS token") in found
    assert ("headers.txt", 3, "git HTTPS token (base64)") in found
    assert ("urls.txt", 1, "notification URL token") in found
    assert ("objects.json", 1, "SSH private key (JSON)") in found
    assert {name for name, _, _ in found} == {
        "operator.log",
        "headers.txt",
        "urls.txt",
        "objects.json",
    }
    assert report.files == 5
    assert report.size == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert report.values == len(planted.VALUES)


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_base64_is_found_at_every_alignment(tree: Path, offset: int) -> None:
    for name, value in planted.VALUES.items():
        encoded = base64.b64encode(b"k" * offset + value.encode() + b"!").decode()
        (tree / "secret.yaml").write_text(f"data:\n  key: {encoded}\n")
        report = planted.scan(tree)
        assert [hit.what for hit in report.hits][:1] == [f"{name} (base64)"], name


def test_the_plant_folder_and_symbolic_links_are_not_read(tree: Path) -> None:
    plant = tree / planted.PLANT_DIR
    plant.mkdir()
    (plant / "slack-url").write_text(f"https://h/{planted.NOTIFY_URL_TOKEN}")
    (tree / "link").symlink_to(plant / "slack-url")
    (tree / "ok.log").write_text("fine\n")

    report = planted.scan(tree, skip=[plant])

    assert report.hits == []
    assert report.files == 1
    values = len(planted.VALUES)
    assert report.line() == f"secrets scan: 1 files, 5 bytes, {values} planted values, 0 found"


def test_a_hit_fails_the_session_and_is_printed(tree: Path) -> None:
    """The plugin's own hooks: a leak turns a green session red and names the file."""
    (tree / "operator.log").write_text(planted.WEBHOOK_SECRET)
    plugin = planted.SecretScan()
    plugin.root = tree

    class Session:
        exitstatus: int = pytest.ExitCode.OK

    class Terminal:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def section(self, title: str) -> None:
            self.lines.append(f"== {title}")

        def write_line(self, line: str, **_: object) -> None:
            self.lines.append(line)

    session, terminal = Session(), Terminal()
    plugin.pytest_sessionfinish(session)  # type: ignore[arg-type]
    plugin.pytest_terminal_summary(terminal)
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED
    assert terminal.lines[1].endswith("1 found")
    assert terminal.lines[2] == f"LEAK {tree / 'operator.log'}:1: git webhook HMAC secret"
