"""The operator image: the Dockerfile, and its runtime dependency set installed for real.

There is no container engine here, so the image is checked in two parts: the Dockerfile's
instructions (small base, non-root numeric user, the package without extras, ``modelrollout
run`` as the command, a context of only what it copies), and what its ``pip install`` gives:
the files the build stage copies are installed without extras into a clean venv, where
``modelrollout run --help`` starts and the operator's modules import without the sandbox's or
the dev tools' packages. That install takes tens of seconds (mark ``e2e``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
#: Packages of the sandbox and dev extras that the operator must run without.
#: Bytecode compiling is most of an install's time here, and the image's own install does it.
PIP_OPTIONS = ("--no-compile", "--disable-pip-version-check")
NOT_AT_RUNTIME = ("kserve", "locust", "sklearn", "rich", "pandas", "kmock", "celpy", "numpy")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in _instructions():
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, arguments))
    return stages


def _build_context_files() -> list[str]:
    """What the build stage COPYs from the context (not from another stage)."""
    copied: list[str] = []
    for instruction, arguments in _stages()[0]:
        if instruction == "COPY" and "--from" not in arguments:
            *sources, _destination = arguments.split()
            copied += sources
    return copied


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_is_python_311_slim_in_both_stages() -> None:
    bases = [
        arguments.split()[0] for instruction, arguments in _instructions() if instruction == "FROM"
    ]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]


def test_the_runtime_stage_runs_modelrollout_as_a_numeric_non_root_user() -> None:
    runtime = dict(_stages()[-1])
    user, _, group = runtime["USER"].partition(":")
    assert user.isdigit()
    assert int(user) != 0
    assert group.isdigit()
    assert int(group) != 0
    assert runtime["ENTRYPOINT"] == '["modelrollout"]'
    assert runtime["CMD"] == '["run"]'


def test_the_runtime_stage_installs_the_package_without_extras_or_build_tools() -> None:
    runs = " ".join(arguments for instruction, arguments in _stages()[-1] if instruction == "RUN")
    (install,) = re.findall(r"pip install [^&]*", runs)
    assert "--no-index" in install
    assert install.split()[-1] == "modelrollout"
    assert "[" not in install
    assert not re.search(r"\b(gcc|build-essential|python3-dev)\b", runs)
    assert "--no-install-recommends" in runs


def test_the_build_context_is_only_what_the_build_copies() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {rule.removeprefix("!").rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {path.rstrip("/") for path in _build_context_files()}


def test_the_user_in_the_image_is_the_one_the_chart_and_deploy_run_as() -> None:
    user = dict(_stages()[-1])["USER"].partition(":")[0]
    values = (REPO / "charts" / "modelrollout" / "values.yaml").read_text()
    assert f"runAsUser: {user}" in values
    assert f"runAsUser: {user}" in (REPO / "deploy" / "deployment.yaml").read_text()


@pytest.mark.e2e
def test_the_runtime_dependency_set_installs_in_a_clean_venv_and_runs(tmp_path: Path) -> None:
    """Given the build stage's files installed without extras in a clean venv, when
    ``modelrollout run --help`` runs, then it succeeds, and the operator's modules import with
    none of the sandbox's or dev tools' packages installed."""
    source = tmp_path / "src"
    source.mkdir()
    for name in _build_context_files():
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run(
        [*pip, "install", "--quiet", *PIP_OPTIONS, str(source)],
        check=True,
        timeout=540,
        capture_output=True,
    )
    installed = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m; print(*(d.name for d in m.distributions()))",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = {_normal(re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0]) for r in requirements}
    present = {_normal(name) for name in installed}
    assert runtime <= present
    assert not {"mlflow", "kserve", "locust", "scikit-learn", "rich", "pytest"} & present

    helped = subprocess.run(
        [venv / "bin" / "modelrollout", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage: modelrollout run" in helped.stdout

    probe = (
        "import sys, modelrollout.cli, modelrollout.handlers, modelrollout.wiring; "
        f"print(*sorted(m for m in {NOT_AT_RUNTIME!r} if m in sys.modules))"
    )
    imported = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == []
