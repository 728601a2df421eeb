"""Least privilege, measured: the operator's RBAC in ``deploy/`` against its real API calls.

The API server emulator records every call of the session; the end-to-end modules that run
before this one (tests/test_e2e_gitops.py, tests/test_e2e_operator.py) drive the operator
through everything it does: rollouts, rollbacks, deletion, git sources with Secrets, metric
templates. Each (verb, group, resource) it used must be granted, and nothing granted may go
unused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelrollout.sandbox.kubeapi.testing import KubeApiProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
OPERATOR_AGENTS = ("kopf/", "modelrollout/")
#: Calls only the end-to-end modules make; without them there is nothing to measure.
E2E_MODULES = ("test_e2e_gitops.py", "test_e2e_operator.py")


def _rbac_rules() -> set[tuple[str, str, str]]:
    documents = yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text())
    (role,) = [d for d in documents if d["kind"] == "ClusterRole"]
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_operator_is_granted_exactly_the_api_calls_it_makes(
    kube_api: KubeApiProcess, request: pytest.FixtureRequest
) -> None:
    """Given every API call the operator made in this session (recorded by the emulator),
    then each (verb, group, resource) is granted by deploy/rbac.yaml and nothing more is."""
    ran = {item.path.name for item in request.session.items}
    if not set(E2E_MODULES) <= ran:
        pytest.skip(f"measures the calls of {E2E_MODULES}: run it together with them")
    used = {
        (call["group"], call["resource"] + (f"/{s}" if (s := call.get("subresource")) else ""),
         call["verb"])
        for call in kube_api.audit()
        if call["userAgent"].startswith(OPERATOR_AGENTS)
    }  # fmt: skip
    granted = _rbac_rules()
    assert used, "the emulator recorded no call from the operator"
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    assert granted <= used, f"granted but never used: {sorted(granted - used)}"
