"""``deploy/``: the kustomization renders with kubectl, and what it renders is safe to run.

The RBAC grants themselves are measured against the operator's real API calls
in tests/test_e2e_operator.py; here: the objects, the CRDs from ``crds/``, and
the pod's security settings (non-root with numeric ids, read-only root filesystem with an
emptyDir at /tmp the only writable place, no capabilities, RuntimeDefault seccomp, resources set).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "deploy")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(rendered: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in rendered if d["kind"] == kind]


def test_it_renders_every_object_the_operator_needs(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
    assert kinds == [
        ("ClusterRole", "modelrollout"),
        ("ClusterRoleBinding", "modelrollout"),
        ("CustomResourceDefinition", "metrictemplates.modelrollout.io"),
        ("CustomResourceDefinition", "modelrollouts.modelrollout.io"),
        ("Deployment", "modelrollout"),
        ("Namespace", "modelrollout-system"),
        ("ServiceAccount", "modelrollout"),
    ]


def test_the_crds_are_the_ones_in_crds(rendered: list[dict[str, Any]]) -> None:
    for crd in by_kind(rendered, "CustomResourceDefinition"):
        source = yaml.safe_load((REPO / "crds" / f"{crd['metadata']['name']}.yaml").read_text())
        assert crd == source


def test_the_binding_gives_the_role_to_the_operators_service_account(
    rendered: list[dict[str, Any]],
) -> None:
    (binding,) = by_kind(rendered, "ClusterRoleBinding")
    (account,) = by_kind(rendered, "ServiceAccount")
    (deployment,) = by_kind(rendered, "Deployment")
    assert binding["roleRef"]["name"] == by_kind(rendered, "ClusterRole")[0]["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "modelrollout"


def test_the_operator_runs_non_root_read_only_without_capabilities(
    rendered: list[dict[str, Any]],
) -> None:
    (deployment,) = by_kind(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["args"] == ["run"]


def test_the_role_grants_no_wildcards(rendered: list[dict[str, Any]]) -> None:
    (role,) = by_kind(rendered, "ClusterRole")
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule


def test_ids_are_numeric_and_the_only_writable_place_is_an_empty_dir_at_tmp(
    rendered: list[dict[str, Any]],
) -> None:
    (deployment,) = by_kind(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    security = pod["securityContext"]
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        assert type(security[field]) is int, field
        assert security[field] > 0, field
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert not {"hostNetwork", "hostPID", "hostIPC"} & {k for k, v in pod.items() if v}
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
