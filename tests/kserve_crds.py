"""The InferenceService CRDs the KServe tests validate against: ours and KServe's own.

Ours ships in the package (``modelrollout/sandbox/crds/``). KServe's is read from
``../shared/kserve/`` beside the repository; when it is absent the upstream check is left out
and :func:`require_upstream` says so (and fails in CI, where it must be there).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout import schema

REPO = Path(__file__).resolve().parents[1]
OUR_CRD = REPO / "operator/modelrollout/sandbox/crds/inferenceservices.serving.kserve.io.yaml"
UPSTREAM_CRD = REPO.parent / "shared" / "kserve" / "serving.kserve.io_inferenceservices.yaml"


@functools.cache
def load_crd(path: Path) -> dict[str, Any]:
    """The CRD at ``path`` (shared between tests: treat it as read-only)."""
    with path.open(encoding="utf-8") as stream:
        crd: dict[str, Any] = yaml.load(
            stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
    return crd


def openapi(path: Path) -> dict[str, Any]:
    (version,) = [v for v in load_crd(path)["spec"]["versions"] if v["name"] == "v1beta1"]
    found: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return found


def schemas() -> dict[str, dict[str, Any]]:
    """Our CRD's schema and, when it is there, KServe's own, by name."""
    found = {"ours": openapi(OUR_CRD)}
    if UPSTREAM_CRD.exists():
        found["upstream"] = openapi(UPSTREAM_CRD)
    return found


def assert_valid(obj: dict[str, Any]) -> None:
    """``obj`` loses nothing to pruning and passes validation, as the API server would check."""
    for name, found in schemas().items():
        pruned, dropped = schema.prune(found, obj)
        assert dropped == [], f"the {name} CRD prunes {dropped}"
        errors = schema.validate(found, schema.apply_defaults(found, pruned))
        assert errors == [], f"the {name} CRD rejects the object: {errors}"


def require_upstream() -> None:
    """Fail in CI, skip elsewhere, when KServe's CRD is not there to validate against."""
    if UPSTREAM_CRD.exists():
        return
    missing = f"KServe's InferenceService CRD is not at {UPSTREAM_CRD} (shared/kserve/)"
    if os.environ.get("CI") == "true":
        pytest.fail(missing)
    pytest.skip(missing + ": only our CRD is checked")
