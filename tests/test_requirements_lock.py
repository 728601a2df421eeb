"""The runtime lock (requirements.lock): what the image installs and CI audits.

Covers: every runtime dependency of pyproject.toml is pinned in the lock at the version
pyproject pins (or one its range allows), every pinned package carries sha256 hashes, the
lock names no package of the sandbox or dev extras, the Dockerfile builds its wheels from the
lock with ``--require-hashes``, and CI runs ``pip-audit`` over it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
NOT_AT_RUNTIME = ("mlflow", "kserve", "locust", "scikit-learn", "pandas", "rich", "pytest")


def locked() -> dict[str, tuple[str, list[str]]]:
    """Package (canonical name) -> (pinned version, its hashes), from the lock's entries."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    entries: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pin, *options = line.split()
        name, separator, version = pin.partition("==")
        assert separator, f"not pinned with ==: {line[:80]}"
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=")]
        entries[canonicalize_name(name)] = (version, hashes)
    return entries


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_every_runtime_dependency_is_locked_at_the_version_pyproject_allows() -> None:
    entries = locked()
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement} is not in requirements.lock"
        version, _ = entries[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, pyproject asks {requirement}"
        )
        exact = [s.version for s in requirement.specifier if s.operator == "=="]
        assert not exact or exact == [version]


def test_every_locked_package_has_sha256_hashes() -> None:
    entries = locked()
    assert len(entries) > len(runtime_requirements())
    for name, (_, hashes) in entries.items():
        assert hashes, f"{name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


def test_the_lock_holds_no_extra_only_package() -> None:
    assert not {canonicalize_name(n) for n in NOT_AT_RUNTIME} & set(locked())


def test_the_image_builds_from_the_lock_with_hashes_checked() -> None:
    dockerfile = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    assert re.search(r"COPY requirements\.lock ", dockerfile)
    assert re.search(r"pip wheel [^&]*--require-hashes[^&]*-r requirements\.lock", dockerfile)
    assert re.search(r"pip wheel [^&]*--no-deps[^&]* \.", dockerfile)


def test_ci_audits_the_lock() -> None:
    ci = re.sub(r"\\\n", " ", (REPO / ".ci" / "run").read_text())
    assert re.search(r"\.venv/bin/pip-audit -r requirements\.lock --require-hashes", ci)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dev = [Requirement(text).name for text in project["optional-dependencies"]["dev"]]
    assert "pip-audit" in dev
