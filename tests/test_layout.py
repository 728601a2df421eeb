"""The repository layout the product card fixes, and what the test set-up relies on.

``operator/`` holds the package ``modelrollout`` and must never become a
package itself: ``import operator`` from the repository root has to stay the
standard-library module.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import modelrollout

ROOT = Path(__file__).resolve().parents[1]


def test_operator_folder_is_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert (ROOT / "operator" / "modelrollout" / "__init__.py").exists()


def test_import_operator_from_the_repository_root_is_the_standard_library() -> None:
    probe = "import operator, sys; print(operator.__file__); print(operator.itemgetter)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert not out[0].startswith(str(ROOT)), out[0]
    assert "itemgetter" in out[1]


def test_the_package_imports_from_the_operator_folder() -> None:
    assert Path(modelrollout.__file__).resolve().parent == ROOT / "operator" / "modelrollout"


def test_pytest_runs_in_importlib_mode_with_warnings_as_errors() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--import-mode=importlib" in config["addopts"]
    assert "--strict-markers" in config["addopts"]
    assert config["pythonpath"][0] == "operator"
    assert config["filterwarnings"] == ["error"]


def test_dependency_pins_match_the_design() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = set(project["dependencies"])
    sandbox = set(project["optional-dependencies"]["sandbox"])
    assert {"kopf==1.45.2", "kubernetes==36.0.3", "mlflow-skinny==3.17.2"} <= runtime
    assert "prometheus-api-client==0.7.2" in runtime
    assert {"mlflow==3.17.2", "kserve==0.21.0", "kmock==0.8", "locust==2.47.0"} <= sandbox
    assert {"scikit-learn==1.9.1", "pandas<3", "protobuf<7"} <= sandbox
    assert project["requires-python"] == ">=3.11"
