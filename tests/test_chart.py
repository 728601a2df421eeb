"""The Helm chart ``charts/modelrollout``, rendered and linted by the real Helm engine.

Covers: the CRDs are byte-identical to ``crds/``; ``helm lint --strict`` passes and every
rendered object is valid against the Kubernetes schemas (kubernetes-validate, strict) or, for
kopf's peering objects, against the chart's CRDs (modelrollout.schema, the emulator's checks),
for the default values and for non-default ones; the RBAC grants are those of
``deploy/rbac.yaml`` (plus kopf's peering grants when leader election is on); the pod is
hardened as in ``deploy/``; the environment is what ``settings.py`` reads; leader election,
the webhook's Secret reference, the Service, ServiceMonitor and PodDisruptionBudget; and
``values.schema.json`` and the chart's checks refuse bad values with Helm's error. End-to-end
(marker ``e2e``): two kopf processes peer through the chart's peering object in the API
emulator, one waits while the other works and takes over when it stops, using exactly the
grants the chart adds for peering.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from modelrollout import schema as structural
from modelrollout import settings as operator_settings
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "modelrollout"
RELEASE = "modelrollout"
NAMESPACE = "modelrollout-system"
#: The chart's minimum Kubernetes (Chart.yaml kubeVersion) and the newest kubernetes-validate has.
MIN_KUBE = re.fullmatch(
    r">=(\d+\.\d+)\.0-0", yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
)
assert MIN_KUBE, "Chart.yaml: kubeVersion should read >=X.Y.0-0"
KUBE_VERSIONS = (MIN_KUBE[1], kubernetes_validate.latest_version())
#: The CRD file the chart adds to those of crds/: kopf's peering objects.
PEERING_CRDS = "kopf-peering.kopf.dev.yaml"
PEERING_GRANTS = {("kopf.dev", "clusterkopfpeerings", verb) for verb in ("list", "watch", "patch")}
NAMESPACED_PEERING_GRANTS = {
    ("kopf.dev", "kopfpeerings", verb) for verb in ("list", "watch", "patch")
}
#: Environment the chart sets that the operator does not read yet: each needs the operator
#: change described in the chart's report (metrics: issue 7 item 2; peering: cli.py).
AWAITING_THE_OPERATOR: set[str] = set()

DIGEST = "sha256:" + "ab" * 32
#: Everything off the defaults at once: a namespaced, highly available install.
NAMESPACED_HA: dict[str, Any] = {
    "image": {"repository": "registry.example/ml/modelrollout", "digest": DIGEST},
    "imagePullSecrets": [{"name": "pull"}],
    "replicaCount": 3,
    "leaderElection": {"enabled": True, "name": "mro-peers"},
    "logLevel": "DEBUG",
    "watchNamespaces": ["team-a", "team-b"],
    "timerSeconds": 2,
    "resyncSeconds": 45,
    "queryTimeoutSeconds": 4.5,
    "prometheus": {"url": "http://prometheus-operated.monitoring:9090"},
    "mlflow": {
        "trackingUri": "http://mlflow.mlflow:5000",
        "storageMap": "mlflow-artifacts:/=s3://mlflow-artifacts/",
    },
    "webhook": {"enabled": True, "port": 9443, "existingSecret": "git-hook", "secretKey": "hmac"},
    "metrics": {"port": 9100, "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
    "podDisruptionBudget": {"enabled": True, "minAvailable": 2},
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
    "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "1Gi"}},
    "podSecurityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
    "extraEnv": [
        {
            "name": "MLFLOW_TRACKING_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "mlflow-auth", "key": "token"}},
        }
    ],
    "podAnnotations": {"team": "ml-platform"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
}
#: Leader election for an operator that watches the whole cluster.
CLUSTER_HA: dict[str, Any] = {"replicaCount": 2, "leaderElection": {"enabled": True}}
VALUE_SETS = {"defaults": {}, "namespaced-ha": NAMESPACED_HA, "cluster-ha": CLUSTER_HA}

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    helm.disable_logging()
    return helm.Chart.load(CHART)


def render(chart: helm.Chart, values: dict[str, Any]) -> Objects:
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return [
        document
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for document in yaml.safe_load_all(text)
        if document
    ]


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, chart: helm.Chart) -> Objects:
    return render(chart, VALUE_SETS[request.param])


def of_kind(objects: Objects, kind: str) -> Objects:
    return [o for o in objects if o["kind"] == kind]


def the(objects: Objects, kind: str) -> dict[str, Any]:
    (found,) = of_kind(objects, kind)
    return found


def operator_container(objects: Objects) -> dict[str, Any]:
    (container,) = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def env_of(objects: Objects) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in operator_container(objects)["env"]}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def deploy_role() -> dict[str, Any]:
    documents = yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text())
    (role,) = [d for d in documents if d["kind"] == "ClusterRole"]
    return role


def chart_crds() -> Objects:
    return [
        document
        for path in sorted((CHART / "crds").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
    ]


# --- The CRDs -------------------------------------------------------------------------------


def test_the_chart_ships_the_crds_of_crds_byte_for_byte() -> None:
    """Given crds/ as the single source, then each of its CRD files is in the chart unchanged,
    and the chart adds only kopf's peering CRDs."""
    sources = sorted(
        p.name for p in (REPO / "crds").glob("*.yaml") if p.name != "kustomization.yaml"
    )
    shipped = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert sources, "crds/ holds no CRD"
    assert shipped == sorted([*sources, PEERING_CRDS])
    for name in sources:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), name


def test_helm_loads_every_crd_of_the_chart(chart: helm.Chart) -> None:
    loaded = sorted(crd["filename"].rpartition("/")[2] for crd in chart.crds)
    assert loaded == sorted(p.name for p in (CHART / "crds").glob("*.yaml"))


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_crd_is_a_valid_kubernetes_object(kube_version: str) -> None:
    """Each CRD, as the oldest Kubernetes the chart allows and the newest read them; the CEL
    rules compile. (1.27 and older refuse the rules' fieldPath.)"""
    for crd in chart_crds():
        kubernetes_validate.validate(crd, kube_version, strict=True)
        for version in crd["spec"]["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            assert structural.compile_rules(schema) == [], crd["metadata"]["name"]


def test_the_minimum_kubernetes_is_the_oldest_that_takes_the_crds() -> None:
    major, minor = MIN_KUBE[1].split(".")
    older = f"{major}.{int(minor) - 1}"
    refused = []
    for crd in chart_crds():
        try:
            kubernetes_validate.validate(crd, older, strict=True)
        except kubernetes_validate.ValidationError:
            refused.append(crd["metadata"]["name"])
    assert refused, f"Kubernetes {older} takes every CRD: lower Chart.yaml's kubeVersion"


# --- Lint and validity ----------------------------------------------------------------------


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_helm_lint_strict_finds_nothing_worse_than_advice(values: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[values], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_rendered_object_is_valid_against_its_schema(
    rendered: Objects, kube_version: str
) -> None:
    """Given a rendering, then each built-in kind validates against that Kubernetes version's
    schema (strict: no unknown fields), and kopf's peering objects against the chart's CRD.
    The ServiceMonitor has no schema here (the Prometheus Operator's CRD is not available):
    its fields are checked by test_the_service_monitor_scrapes_the_metrics_port."""
    crd_schemas = {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd["spec"]["versions"][0]["schema"][
            "openAPIV3Schema"
        ]
        for crd in chart_crds()
    }
    for obj in rendered:
        group = obj["apiVersion"].rpartition("/")[0]
        if (group, obj["kind"]) in crd_schemas:
            assert structural.validate(crd_schemas[group, obj["kind"]], obj) == [], obj
        elif obj["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(obj, kube_version, strict=True)


def test_every_namespaced_object_lands_in_the_release_or_a_watched_namespace(
    rendered: Objects,
) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
    for obj in rendered:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert namespace is None, obj["kind"]
        elif obj["kind"] in ("Role", "RoleBinding", "KopfPeering"):
            assert namespace in NAMESPACED_HA["watchNamespaces"], obj["kind"]
        else:
            assert namespace == NAMESPACE, obj["kind"]


# --- RBAC -----------------------------------------------------------------------------------


def test_by_default_the_cluster_role_is_deploys_word_for_word(chart: helm.Chart) -> None:
    role = the(render(chart, {}), "ClusterRole")
    assert role["rules"] == deploy_role()["rules"]


def test_the_binding_gives_the_role_to_the_operators_service_account(rendered: Objects) -> None:
    account = the(rendered, "ServiceAccount")["metadata"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
    role_names = {r["metadata"]["name"] for r in of_kind(rendered, "ClusterRole")}
    for binding in of_kind(rendered, "ClusterRoleBinding") + of_kind(rendered, "RoleBinding"):
        assert binding["subjects"] == [subject]
        assert binding["roleRef"]["name"] in role_names | {
            r["metadata"]["name"] for r in of_kind(rendered, "Role")
        }
    pod = the(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]


def test_watched_namespaces_get_the_namespaced_grants_as_roles(chart: helm.Chart) -> None:
    """Given watchNamespaces, then the ClusterRole keeps only what is cluster-scoped (CRD
    discovery, and the namespaces kopf lists and watches when given namespaces), each watched
    namespace gets a Role with the rest and a RoleBinding, and the grants are all together
    deploy's plus kopf's namespaced peering and namespace watching."""
    objects = render(chart, NAMESPACED_HA)
    namespaces = {("", "namespaces", v) for v in ("list", "watch")}
    expected = grants(deploy_role()["rules"]) | NAMESPACED_PEERING_GRANTS | namespaces
    cluster = grants(the(objects, "ClusterRole")["rules"])
    assert cluster == namespaces | {
        ("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")
    }
    roles = of_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in of_kind(objects, "RoleBinding")) == [
        "team-a",
        "team-b",
    ]
    for role in roles:
        assert cluster | grants(role["rules"]) == expected


def test_leader_election_adds_exactly_kopfs_peering_grants(chart: helm.Chart) -> None:
    role = the(render(chart, CLUSTER_HA), "ClusterRole")
    assert grants(role["rules"]) == grants(deploy_role()["rules"]) | PEERING_GRANTS


def test_no_grant_is_a_wildcard(rendered: Objects) -> None:
    for role in of_kind(rendered, "ClusterRole") + of_kind(rendered, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], rule


def test_rbac_can_be_left_to_the_cluster_admin(chart: helm.Chart) -> None:
    objects = render(
        chart, {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}}
    )
    kinds = {o["kind"] for o in objects}
    assert not kinds & {
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    }
    assert the(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# --- The pod --------------------------------------------------------------------------------


def test_the_operator_runs_non_root_read_only_without_capabilities(rendered: Objects) -> None:
    pod = the(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(rendered)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["args"] == ["run"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


NOTIFYING: dict[str, Any] = {
    "notifications": {
        "enabled": True,
        "existingSecret": "rollout-notify",
        "keys": {"slackUrl": "slack", "webhookUrl": "hook", "webhookSigningSecret": "hmac"},
    }
}


@pytest.mark.parametrize("values", [{}, NAMESPACED_HA, NOTIFYING], ids=["defaults", "ha", "notify"])
def test_ids_are_numeric_and_the_only_writable_place_is_an_empty_dir_at_tmp(
    chart: helm.Chart, values: dict[str, Any]
) -> None:
    """Numeric non-root ids (the kubelet checks runAsNonRoot without /etc/passwd), nothing
    in the container loosens the pod's settings, and every mount but /tmp is read-only."""
    pod = the(render(chart, values), "Deployment")["spec"]["template"]["spec"]
    security = pod["securityContext"]
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        assert type(security[field]) is int, field
        assert security[field] > 0, field
    (container,) = pod["containers"]
    assert not {"runAsUser", "runAsNonRoot", "privileged", "seLinuxOptions"} & set(
        container["securityContext"]
    )
    assert not {"hostNetwork", "hostPID", "hostIPC"} & {k for k, v in pod.items() if v}
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable == [{"name": "tmp", "mountPath": "/tmp"}]
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}
    assert not any("hostPath" in v for v in volumes.values())


def test_by_default_the_pod_is_hardened_as_deploys(chart: helm.Chart) -> None:
    deployment = yaml.safe_load((REPO / "deploy" / "deployment.yaml").read_text())
    theirs = deployment["spec"]["template"]["spec"]
    ours = the(render(chart, {}), "Deployment")["spec"]["template"]["spec"]
    assert ours["securityContext"] == theirs["securityContext"]
    (their_container,) = theirs["containers"]
    for field in ("securityContext", "resources", "livenessProbe", "args", "volumeMounts"):
        assert operator_container(render(chart, {}))[field] == their_container[field], field


def test_the_image_is_the_app_version_or_the_pinned_digest(chart: helm.Chart) -> None:
    assert operator_container(render(chart, {}))["image"] == "modelrollout:0.1.0"
    assert operator_container(render(chart, {"image": {"tag": "0.2.0-rc1"}}))["image"] == (
        "modelrollout:0.2.0-rc1"
    )
    pinned = operator_container(render(chart, NAMESPACED_HA))["image"]
    assert pinned == f"registry.example/ml/modelrollout@{DIGEST}"


# --- Settings -------------------------------------------------------------------------------


def _names_settings_reads() -> set[str]:
    source = (REPO / "operator" / "modelrollout" / "settings.py").read_text()
    return {
        operator_settings.PREFIX + name
        for name in re.findall(r'\b(?:get|path)\("([A-Z_]+)"\)', source)
    }


def test_the_operator_reads_every_variable_the_chart_sets(rendered: Objects) -> None:
    """Every MODELROLLOUT_* the chart renders is read by settings.py, or is listed as
    awaiting its operator change; one that the operator has since learnt leaves that list."""
    read = _names_settings_reads()
    assert "MODELROLLOUT_NAMESPACES" in read, "settings.py changed shape: update this probe"
    rendered_names = {n for n in env_of(rendered) if n.startswith(operator_settings.PREFIX)}
    assert rendered_names <= read | AWAITING_THE_OPERATOR
    assert not AWAITING_THE_OPERATOR & read, "the operator reads it now: drop it from the list"


def test_the_rendered_environment_gives_the_operator_the_values(chart: helm.Chart) -> None:
    """Given non-default values, when settings.py reads the rendered literal environment, then
    it sees those values."""
    env = env_of(render(chart, NAMESPACED_HA))
    literal = {name: e["value"] for name, e in env.items() if "value" in e}
    got = operator_settings.from_env(literal)
    assert got.namespaces == ("team-a", "team-b")
    assert got.timer_seconds == 2
    assert got.resync_seconds == 45
    assert got.query_timeout_seconds == 4.5
    assert got.log_level == "DEBUG"
    assert got.prometheus_url == NAMESPACED_HA["prometheus"]["url"]
    assert got.mlflow_tracking_uri == NAMESPACED_HA["mlflow"]["trackingUri"]
    assert got.storage_map == NAMESPACED_HA["mlflow"]["storageMap"]
    assert got.webhook_address == "0.0.0.0:9443"
    assert got.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert str(got.git_cache).startswith("/tmp/")
    assert got.git_allow_file is False


def test_defaults_watch_the_whole_cluster_and_leave_optional_settings_unset(
    chart: helm.Chart,
) -> None:
    env = env_of(render(chart, {}))
    for name in (
        "MODELROLLOUT_NAMESPACES",
        "MODELROLLOUT_PROMETHEUS_URL",
        "MODELROLLOUT_MLFLOW_TRACKING_URI",
        "MODELROLLOUT_WEBHOOK_ADDRESS",
        "MODELROLLOUT_WEBHOOK_SECRET",
        "MODELROLLOUT_PEERING",
        "MODELROLLOUT_GIT_ALLOW_FILE",
    ):
        assert name not in env, name


# --- Secrets --------------------------------------------------------------------------------


def test_the_webhook_secret_is_a_reference_never_a_literal(chart: helm.Chart) -> None:
    env = env_of(render(chart, NAMESPACED_HA))
    assert env["MODELROLLOUT_WEBHOOK_SECRET"] == {
        "name": "MODELROLLOUT_WEBHOOK_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "git-hook", "key": "hmac"}},
    }
    for entry in env.values():
        if re.search(r"(?i)secret|token|password", entry["name"]):
            assert "value" not in entry, entry["name"]


@pytest.mark.parametrize(
    "values",
    [
        {"webhook": {"enabled": True, "existingSecret": "hook", "secret": "s3cr3t"}},
        {"extraEnv": [{"name": "MODELROLLOUT_WEBHOOK_SECRET", "value": "s3cr3t"}]},
        {"extraEnv": [{"name": "MLFLOW_TRACKING_TOKEN", "value": "s3cr3t"}]},
    ],
    ids=["webhook.secret", "extraEnv webhook secret", "extraEnv token"],
)
def test_no_value_can_put_a_secret_in_the_deployment(
    chart: helm.Chart, values: dict[str, Any]
) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


# --- Leader election ------------------------------------------------------------------------


def test_a_single_standalone_replica_is_replaced_never_doubled(chart: helm.Chart) -> None:
    objects = render(chart, {})
    deployment = the(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not of_kind(objects, "ClusterKopfPeering") + of_kind(objects, "KopfPeering")


def test_cluster_wide_replicas_peer_through_a_cluster_kopf_peering(chart: helm.Chart) -> None:
    objects = render(chart, CLUSTER_HA)
    deployment = the(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    peering = the(objects, "ClusterKopfPeering")
    env = env_of(objects)
    assert env["MODELROLLOUT_PEERING"]["value"] == peering["metadata"]["name"] == RELEASE
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_namespaced_replicas_peer_in_each_watched_namespace(chart: helm.Chart) -> None:
    objects = render(chart, NAMESPACED_HA)
    peerings = of_kind(objects, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert {p["metadata"]["name"] for p in peerings} == {"mro-peers"}
    assert env_of(objects)["MODELROLLOUT_PEERING"]["value"] == "mro-peers"
    assert not of_kind(objects, "ClusterKopfPeering")


# --- Service, ServiceMonitor, PodDisruptionBudget -------------------------------------------


def test_the_service_reaches_the_metrics_and_webhook_ports(rendered: Objects) -> None:
    service = the(rendered, "Service")
    pod = the(rendered, "Deployment")["spec"]["template"]
    container_ports = {p["name"] for p in operator_container(rendered)["ports"]}
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    names = {p["name"] for p in service["spec"]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    assert "metrics" in names
    assert "health" not in names
    assert ("webhook" in names) == ("MODELROLLOUT_WEBHOOK_ADDRESS" in env_of(rendered))


def test_the_service_monitor_scrapes_the_metrics_port(chart: helm.Chart) -> None:
    objects = render(chart, NAMESPACED_HA)
    monitor = the(objects, "ServiceMonitor")
    service = the(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    assert not of_kind(render(chart, {}), "ServiceMonitor")


def test_the_disruption_budget_keeps_replicas_of_the_operator(chart: helm.Chart) -> None:
    objects = render(chart, NAMESPACED_HA)
    budget = the(objects, "PodDisruptionBudget")
    pod_labels = the(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["minAvailable"] == 2
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert not of_kind(render(chart, {}), "PodDisruptionBudget")


# --- Refused values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"logLevel": "LOUD"}, "/logLevel"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        ({"webhook": {"port": 70000}}, "/webhook/port"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"prometheus": {"url": "prometheus:9090"}}, "/prometheus/url"),
        ({"mlflow": {"storageMap": "no-equals-sign"}}, "/mlflow/storageMap"),
        ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "/resources/requests/cpu"),
        ({"timerSeconds": 0}, "/timerSeconds"),
        ({"resyncSeconds": -1}, "/resyncSeconds"),
        (
            {"metrics": {"serviceMonitor": {"interval": "often"}}},
            "/metrics/serviceMonitor/interval",
        ),
        ({"replicas": 2}, "replicas"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_values_schema_refuses_a_bad_value_with_helms_error(
    chart: helm.Chart, values: dict[str, Any], where: str
) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert where in str(refused.value)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"replicaCount": 2}, "needs leaderElection.enabled"),
        ({"webhook": {"enabled": True}}, "needs webhook.existingSecret"),
        ({"podDisruptionBudget": {"enabled": True}}, "blocks every node drain"),
        (
            {**CLUSTER_HA, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}},
            "minAvailable must be below replicaCount",
        ),
        ({"metrics": {"port": 8080}}, "metrics.port must differ"),
        ({"serviceAccount": {"create": False}}, "name the existing ServiceAccount"),
    ],
    ids=["replicas", "webhook", "pdb", "pdb-min", "ports", "serviceaccount"],
)
def test_rules_across_values_fail_the_render_with_a_reason(
    chart: helm.Chart, values: dict[str, Any], reason: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as refused:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert reason in str(refused.value)


def test_the_values_file_passes_its_own_schema(chart: helm.Chart) -> None:
    chart.validate_schema(yaml.safe_load((CHART / "values.yaml").read_text()))


# --- NOTES ----------------------------------------------------------------------------------


def test_the_notes_say_where_the_webhook_listens_and_what_is_unset(chart: helm.Chart) -> None:
    notes = chart.render(NAMESPACED_HA, name=RELEASE, namespace=NAMESPACE)[
        "modelrollout/templates/NOTES.txt"
    ]
    assert f"http://{RELEASE}.{NAMESPACE}.svc:9443/hooks/git" in notes
    assert "team-a, team-b" in notes
    default_notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)[
        "modelrollout/templates/NOTES.txt"
    ]
    assert "No mlflow.trackingUri is set" in default_notes
    assert "every namespace" in default_notes


# --- Leader election, measured ---------------------------------------------------------------


def _wait_for_peering_watch(api: KubeApiProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(
            c["verb"] == "watch" and c["resource"] == "clusterkopfpeerings" for c in api.audit()
        ):
            return
        time.sleep(0.1)
    pytest.fail(f"no watch of clusterkopfpeerings within {timeout} s")


def _wait_for_line(log: Path, text: str, *, after: int = 0, timeout: float = 30.0) -> int:
    """The offset of ``text`` in the growing ``log`` past ``after``; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = log.read_text(encoding="utf-8").find(text, after)
        if found >= 0:
            return found
        time.sleep(0.1)
    pytest.fail(f"{log.name}: no {text!r} within {timeout} s:\n{log.read_text()[-2000:]}")


@pytest.mark.e2e
def test_peered_replicas_elect_one_and_hand_over_with_only_the_granted_calls(
    chart: helm.Chart, tmp_path: Path
) -> None:
    """Given the chart's CRDs and its ClusterKopfPeering in the API emulator, when two operators
    (``modelrollout run`` with the chart's MODELROLLOUT_PEERING) peer through it with priorities
    1 and 2, then the lower one pauses in favour of the higher, takes over once the higher
    stops, and kopf's calls on the peering are exactly the grants the chart adds (list, watch,
    patch)."""
    objects = render(chart, CLUSTER_HA)
    peering = the(objects, "ClusterKopfPeering")
    name = env_of(objects)["MODELROLLOUT_PEERING"]["value"]
    crds = sorted((CHART / "crds").glob("*.yaml"))
    with KubeApiProcess.start(tmp_path, crds=crds) as api:
        env = {**os.environ, "KUBECONFIG": str(api.kubeconfig)}
        manifest = tmp_path / "peering.json"
        manifest.write_text(json.dumps(peering))
        subprocess.run(["kubectl", "apply", "-f", manifest], env=env, check=True, timeout=30)
        api.clear_audit()
        logs = {priority: tmp_path / f"replica-{priority}.log" for priority in (1, 2)}
        replicas: dict[int, subprocess.Popen[bytes]] = {}
        run = [sys.executable, "-m", "modelrollout.cli", "run"]
        try:
            for priority, log in logs.items():
                with log.open("wb") as out:
                    replicas[priority] = subprocess.Popen(
                        run,
                        env={
                            **env,
                            "POD_ID": f"{RELEASE}-{priority}",
                            "MODELROLLOUT_PEERING": name,
                            "MODELROLLOUT_PEERING_PRIORITY": str(priority),
                            "MODELROLLOUT_REGISTRY": "static:s3://models",
                        },
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                if priority == 1:
                    # The higher peer starts once the lower one watches the peering: kopf
                    # learns of peers from watch events, so a peer that registered before the
                    # watch began would be noticed only at its next keep-alive.
                    _wait_for_peering_watch(api)
            paused = _wait_for_line(logs[1], "Pausing operations in favour of")
            replicas[2].terminate()
            assert replicas[2].wait(timeout=30) == 0
            _wait_for_line(logs[1], "Resuming operations", after=paused)
        finally:
            for replica in replicas.values():
                if replica.poll() is None:
                    replica.terminate()
                    replica.wait(timeout=30)
        calls = [c for c in api.audit() if c["userAgent"].startswith("kopf/")]
    used = {(c["group"], c["resource"], c["verb"]) for c in calls if not c.get("subresource")}
    assert {call for call in used if call[0] == "kopf.dev"} == PEERING_GRANTS
    assert used <= grants(the(objects, "ClusterRole")["rules"])
