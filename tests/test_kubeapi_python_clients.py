"""The Kubernetes API emulator as the ``kubernetes`` and ``kubernetes_asyncio`` clients see it.

Every behaviour runs twice: against the emulator (the session's ``kube_api`` process, or one
with a short history where a test needs it) and against vanilla kmock (its
``KubernetesEmulator`` on ``kmock.Server``, the resources declared), where it must fail:
``xfail(strict=True)``, so a test that vanilla kmock passes would fail the suite — proof that
the test checks the behaviour and not only that requests get an answer.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from modelrollout.sandbox.kubeapi.testing import KubeApiProcess

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "modelrollout.io", "v1alpha1", "modelrollouts"
TEST_GROUP = "test.modelrollout.io"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

# Vanilla kmock, with the resources declared so that requests reach its emulator.
VANILLA = """
import asyncio, kmock
RESOURCES = {
    "v1/namespaces": ("Namespace", False), "v1/configmaps": ("ConfigMap", True),
    "v1/events": ("Event", True),
    "modelrollout.io/v1alpha1/modelrollouts": ("ModelRollout", True),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
    "test.modelrollout.io/v1/gadgets": ("Gadget", True),
}
async def main():
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        for key, (kind, namespaced) in RESOURCES.items():
            emulator.resources[key] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, subresources={"status"},
                verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
        print(str(server.url).rstrip("/"), flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""


@dataclass
class Target:
    """A server under test: its URL, a kubeconfig, and (the emulator only) its admin calls."""

    kind: str
    url: str
    kubeconfig: Path
    process: KubeApiProcess | None = None
    watch_guard: float = 5.0  # client-side limit on a watch that should end on its own

    @property
    def admin(self) -> KubeApiProcess:
        assert self.process is not None, "vanilla kmock has no audit or fault injection"
        return self.process


def targets(lacks: str) -> list[Any]:
    reason = f"vanilla kmock lacks {lacks}; this proves the test checks it"
    return [
        pytest.param("emulator", id="emulator"),
        pytest.param(
            "kmock", id="vanilla-kmock", marks=pytest.mark.xfail(strict=True, reason=reason)
        ),
    ]


def _kubeconfig(path: Path, url: str) -> Path:
    from modelrollout.sandbox.kubeapi.app import write_kubeconfig

    write_kubeconfig(path, url)
    return path


@pytest.fixture(scope="module")
def vanilla_kmock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    process = subprocess.Popen(
        [sys.executable, "-c", VANILLA],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    kubeconfig = _kubeconfig(tmp_path_factory.mktemp("kmock") / "kubeconfig", url)
    yield Target("kmock", url, kubeconfig, watch_guard=1.5)
    process.terminate()
    process.wait(10)
    process.stdout.close()


@pytest.fixture(scope="module")
def short_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiProcess]:
    """An emulator that keeps only 20 changes and sends bookmarks every 0.2 seconds."""
    workdir = tmp_path_factory.mktemp("kube-api-short")
    crds = sorted((REPO / "crds").glob("*.modelrollout.io.yaml"))
    with KubeApiProcess.start(workdir, crds=crds, history_limit=20, bookmark_interval=0.2) as api:
        yield api


def _emulator(request: pytest.FixtureRequest, name: str) -> Target:
    process: KubeApiProcess = request.getfixturevalue(name)
    return Target("emulator", process.url, process.kubeconfig, process)


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "kmock":
        found: Target = request.getfixturevalue("vanilla_kmock")
        return found
    return _emulator(request, "kube_api")


@pytest.fixture
def short_target(request: pytest.FixtureRequest) -> Target:
    if request.param == "kmock":
        found: Target = request.getfixturevalue("vanilla_kmock")
        return found
    return _emulator(request, "short_history")


@dataclass
class Api:
    """The sync client's APIs on one target, and a namespace of this test's own."""

    target: Target
    client: client.ApiClient
    namespace: str
    core: client.CoreV1Api = field(init=False)
    custom: client.CustomObjectsApi = field(init=False)
    extensions: client.ApiextensionsV1Api = field(init=False)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)
        self.extensions = client.ApiextensionsV1Api(self.client)

    def create(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body, **kwargs
        )
        return found

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return found

    def patch(self, name: str, body: Any, content_type: str = MERGE, **kwargs: Any) -> Any:
        return self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            body,
            _content_type=content_type,
            **kwargs,
        )

    def patch_status(self, name: str, body: Any) -> Any:
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, name, body, _content_type=MERGE
        )

    def list(self, **kwargs: Any) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, **kwargs
        )
        return found

    def events(self, since: str | None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Watch events on rollouts in the namespace; the server must end the stream."""
        options: dict[str, Any] = {
            "timeout_seconds": 1,
            "_request_timeout": self.target.watch_guard,
        }
        if since is not None:
            options["resource_version"] = since
        options.update(kwargs)
        return watch.Watch().stream(  # type: ignore[no-any-return]
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            **options,
        )


def _api(target: Target) -> Iterator[Api]:
    api_client = config.new_client_from_config(config_file=str(target.kubeconfig))
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    api = Api(target, api_client, namespace)
    if target.kind == "emulator":  # vanilla kmock knows no namespaces: it takes any
        api.core.create_namespace({"metadata": {"name": namespace}})
    yield api
    selector = f"metadata.name={namespace}"
    if target.kind == "emulator" and api.core.list_namespace(field_selector=selector).items:
        api.core.delete_namespace(namespace)
    api_client.close()


@pytest.fixture
def api(target: Target) -> Iterator[Api]:
    yield from _api(target)


@pytest.fixture
def short_api(short_target: Target) -> Iterator[Api]:
    yield from _api(short_target)


def rollout(name: str, **spec: Any) -> dict[str, Any]:
    """A valid ModelRollout (the inline example) with ``spec`` merged over it."""
    with (REPO / "deploy/examples/rollout-inline.yaml").open(encoding="utf-8") as stream:
        body: dict[str, Any] = yaml.safe_load(stream)
    body["metadata"] = {"name": name}
    body["spec"].update(spec)
    return body


def failure(call: Callable[[], Any]) -> tuple[int, dict[str, Any], ApiException]:
    with pytest.raises(ApiException) as caught:
        call()
    exc = caught.value
    status: dict[str, Any] = yaml.safe_load(exc.body) if exc.body else {}
    return exc.status, status, exc


def gadget_crd(*, status: bool) -> dict[str, Any]:
    """A small CRD with a transition rule (replicas may not decrease)."""
    version: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "properties": {
                            "replicas": {
                                "type": "integer",
                                "x-kubernetes-validations": [
                                    {"rule": "self >= oldSelf", "message": "may not decrease"}
                                ],
                            },
                            "colour": {"type": "string", "default": "blue"},
                        },
                    },
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }
        },
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{TEST_GROUP}"},
        "spec": {
            "group": TEST_GROUP,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [version],
        },
    }


# ------------------------------------------------------------------ create, get, list


@pytest.mark.parametrize(
    "target", targets("uid, creationTimestamp, generation and 201"), indirect=True
)
def test_create_answers_201_with_the_server_owned_metadata(api: Api) -> None:
    data, code, _ = api.custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, api.namespace, PLURAL, rollout("fraud")
    )
    meta = data["metadata"]
    assert code == 201
    assert uuid.UUID(meta["uid"]).version == 4
    assert RFC3339.fullmatch(meta["creationTimestamp"])
    assert meta["generation"] == 1
    assert meta["resourceVersion"].isdigit()
    assert api.get("fraud") == data
    listed = api.list()
    assert listed["kind"] == "ModelRolloutList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["fraud"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])


@pytest.mark.parametrize("target", targets("one global resourceVersion counter"), indirect=True)
def test_resource_versions_come_from_one_global_counter(api: Api) -> None:
    first = api.create(rollout("a"))["metadata"]["resourceVersion"]
    configmap = api.core.create_namespaced_config_map(
        api.namespace, {"metadata": {"name": "c"}, "data": {"k": "v"}}
    )
    second = api.create(rollout("b"))["metadata"]["resourceVersion"]
    assert int(first) < int(configmap.metadata.resource_version) < int(second)
    assert api.list()["metadata"]["resourceVersion"] == second


@pytest.mark.parametrize("target", targets("409 AlreadyExists"), indirect=True)
def test_creating_a_duplicate_is_409_already_exists(api: Api) -> None:
    api.create(rollout("fraud"))
    code, status, _ = failure(lambda: api.create(rollout("fraud")))
    assert code == 409
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'modelrollouts.modelrollout.io "fraud" already exists'
    assert status["details"] == {"name": "fraud", "group": GROUP, "kind": PLURAL}


@pytest.mark.parametrize("target", targets("namespaces"), indirect=True)
def test_creating_in_a_namespace_that_does_not_exist_is_404(api: Api) -> None:
    code, status, _ = failure(
        lambda: api.custom.create_namespaced_custom_object(
            GROUP, VERSION, "nowhere", PLURAL, rollout("fraud")
        )
    )
    assert (code, status["reason"]) == (404, "NotFound")
    assert status["message"] == 'namespaces "nowhere" not found'


@pytest.mark.parametrize("target", targets("generateName"), indirect=True)
def test_generate_name_adds_a_random_suffix(api: Api) -> None:
    body = rollout("ignored")
    body["metadata"] = {"generateName": "fraud-"}
    name = api.create(body)["metadata"]["name"]
    assert re.fullmatch(r"fraud-[a-z0-9]{5}", name)
    assert api.get(name)["metadata"]["generateName"] == "fraud-"


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("target", targets("openAPIV3Schema validation"), indirect=True)
def test_an_invalid_object_is_422_invalid_with_causes(api: Api) -> None:
    body = rollout("fraud", strategy={"steps": [{"setWeight": 200}]})
    del body["spec"]["target"]
    code, status, _ = failure(lambda: api.create(body))
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"].startswith('ModelRollout.modelrollout.io "fraud" is invalid: [')
    causes = {c["field"]: c for c in status["details"]["causes"]}
    assert causes["spec.target"]["reason"] == "FieldValueRequired"
    weight = causes["spec.strategy.steps[0].setWeight"]
    assert weight["reason"] == "FieldValueInvalid"
    assert weight["message"].startswith("Invalid value: 200: ")
    assert status["details"]["kind"] == "ModelRollout"
    assert failure(lambda: api.get("fraud"))[0] == 404


@pytest.mark.parametrize("target", targets("CEL rules"), indirect=True)
def test_a_failed_cel_rule_is_422_with_its_message(api: Api) -> None:
    body = rollout(
        "fraud", model={"uri": "models:/fraud/1", "git": {"repository": "r", "path": "p.yaml"}}
    )
    code, status, _ = failure(lambda: api.create(body))
    assert code == 422
    (cause,) = status["details"]["causes"]
    assert cause["field"] == "spec.model"
    assert cause["message"] == "Invalid value: set exactly one of uri and git"
    assert status["message"] == (
        'ModelRollout.modelrollout.io "fraud" is invalid: spec.model: Invalid value: '
        "set exactly one of uri and git"
    )


@pytest.mark.parametrize(
    "target", targets("CEL transition rules and CRD registration"), indirect=True
)
def test_a_transition_rule_sees_the_old_object_on_update(api: Api) -> None:
    gadget = {
        "apiVersion": f"{TEST_GROUP}/v1",
        "kind": "Gadget",
        "metadata": {"name": "g"},
        "spec": {"replicas": 3},
    }
    objects = api.custom
    api.extensions.create_custom_resource_definition(gadget_crd(status=True))
    try:
        objects.create_namespaced_custom_object(TEST_GROUP, "v1", api.namespace, "gadgets", gadget)
        objects.patch_namespaced_custom_object(
            TEST_GROUP,
            "v1",
            api.namespace,
            "gadgets",
            "g",
            {"spec": {"replicas": 5}},
            _content_type=MERGE,
        )
        code, status, _ = failure(
            lambda: objects.patch_namespaced_custom_object(
                TEST_GROUP,
                "v1",
                api.namespace,
                "gadgets",
                "g",
                {"spec": {"replicas": 4}},
                _content_type=MERGE,
            )
        )
        assert code == 422
        assert status["details"]["causes"][0]["field"] == "spec.replicas"
        assert status["details"]["causes"][0]["message"] == "Invalid value: 4: may not decrease"
    finally:
        api.extensions.delete_custom_resource_definition(f"gadgets.{TEST_GROUP}")


@pytest.mark.parametrize("target", targets("schema defaults"), indirect=True)
def test_schema_defaults_are_applied_on_create(api: Api) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRollout",
        "metadata": {"name": "bare"},
        "spec": {"model": {"uri": "models:/fraud/1"}, "target": {"inferenceService": "f"}},
    }
    spec = api.create(body)["spec"]
    assert spec["target"]["router"] == "kserve-serverless"
    assert spec["strategy"] == {"steps": []}


@pytest.mark.parametrize("target", targets("pruning and field-validation warnings"), indirect=True)
def test_unknown_fields_are_pruned_with_a_warning_or_silently(api: Api) -> None:
    body = rollout("warned")
    body["spec"]["colour"] = "red"
    data, _, headers = api.custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, api.namespace, PLURAL, body
    )
    assert "colour" not in data["spec"]
    assert headers["Warning"] == '299 - "unknown field \\"spec.colour\\""'
    body["metadata"]["name"] = "quiet"
    data, _, headers = api.custom.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, api.namespace, PLURAL, body, field_validation="Ignore"
    )
    assert "colour" not in data["spec"]
    assert "Warning" not in headers


@pytest.mark.parametrize("target", targets("fieldValidation=Strict"), indirect=True)
def test_strict_field_validation_rejects_unknown_fields(api: Api) -> None:
    body = rollout("strict")
    body["spec"]["colour"] = "red"
    code, status, _ = failure(lambda: api.create(body, field_validation="Strict"))
    assert (code, status["reason"]) == (400, "BadRequest")  # kube answers 400, not 422, here
    assert status["message"] == (
        'ModelRollout in version "v1alpha1" cannot be handled as a ModelRollout: '
        'strict decoding error: unknown field "spec.colour"'
    )
    assert failure(lambda: api.get("strict"))[0] == 404


# ------------------------------------------------------------------ update and patch


@pytest.mark.parametrize("target", targets("resourceVersion preconditions"), indirect=True)
def test_put_with_a_stale_resource_version_is_409_conflict(api: Api) -> None:
    stale = api.create(rollout("fraud"))
    fresh = copy.deepcopy(stale)
    fresh["spec"]["paused"] = True
    api.custom.replace_namespaced_custom_object(
        GROUP, VERSION, api.namespace, PLURAL, "fraud", fresh
    )
    stale["spec"]["progressDeadlineSeconds"] = 60
    code, status, _ = failure(
        lambda: api.custom.replace_namespaced_custom_object(
            GROUP, VERSION, api.namespace, PLURAL, "fraud", stale
        )
    )
    assert (code, status["reason"]) == (409, "Conflict")
    assert status["message"] == (
        'Operation cannot be fulfilled on modelrollouts.modelrollout.io "fraud": the object has '
        "been modified; please apply your changes to the latest version and try again"
    )
    del stale["metadata"]["resourceVersion"]  # no resourceVersion: an unconditional update
    replaced = api.custom.replace_namespaced_custom_object(
        GROUP, VERSION, api.namespace, PLURAL, "fraud", stale
    )
    assert replaced["spec"]["progressDeadlineSeconds"] == 60


@pytest.mark.parametrize("target", targets("resourceVersion preconditions on PATCH"), indirect=True)
def test_a_patch_carrying_a_stale_resource_version_is_409(api: Api) -> None:
    created = api.create(rollout("fraud"))
    api.patch("fraud", {"spec": {"paused": True}})
    stale = {
        "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
        "spec": {"paused": False},
    }
    assert failure(lambda: api.patch("fraud", stale))[0] == 409
    assert api.get("fraud")["spec"]["paused"] is True


@pytest.mark.parametrize("target", targets("JSON patch and its test operation"), indirect=True)
def test_json_patch_applies_and_a_failed_test_operation_is_422(api: Api) -> None:
    api.create(rollout("fraud"))
    ops = [
        {"op": "test", "path": "/spec/model/uri", "value": "models:/fraud@champion"},
        {"op": "replace", "path": "/spec/model/uri", "value": "models:/fraud/7"},
        {"op": "add", "path": "/metadata/labels", "value": {"team": "ml"}},
    ]
    patched = api.patch("fraud", ops, JSON_PATCH)
    assert patched["spec"]["model"]["uri"] == "models:/fraud/7"
    assert patched["metadata"]["labels"] == {"team": "ml"}
    failing = [
        {"op": "test", "path": "/spec/model/uri", "value": "models:/fraud/1"},
        {"op": "replace", "path": "/spec/paused", "value": True},
    ]
    code, status, _ = failure(lambda: api.patch("fraud", failing, JSON_PATCH))
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["message"] == (
        "testing value /spec/model/uri failed: test failed"
    )
    assert api.get("fraud")["spec"]["paused"] is False


@pytest.mark.parametrize(
    "target", targets("strategic merge refusal for custom resources"), indirect=True
)
def test_strategic_merge_patch_of_a_custom_resource_is_415(api: Api) -> None:
    api.create(rollout("fraud"))
    code, status, _ = failure(
        lambda: api.patch(
            "fraud", {"spec": {"paused": True}}, "application/strategic-merge-patch+json"
        )
    )
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")


@pytest.mark.parametrize("target", targets("server-side apply"), indirect=True)
def test_server_side_apply_creates_then_merges_and_needs_a_field_manager(api: Api) -> None:
    applied = rollout("applied")  # JSON is YAML: the client sends the dict as JSON
    apply = "application/apply-patch+yaml"
    code, status, _ = failure(lambda: api.patch("applied", applied, apply))
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "fieldManager"
    _, code, _ = api.custom.patch_namespaced_custom_object_with_http_info(
        GROUP,
        VERSION,
        api.namespace,
        PLURAL,
        "applied",
        applied,
        field_manager="me",
        _content_type=apply,
    )
    assert code == 201  # created
    assert api.get("applied")["metadata"]["generation"] == 1
    again = api.patch("applied", {"spec": {"paused": True}}, apply, field_manager="me")
    assert again["spec"]["paused"] is True
    assert again["spec"]["model"]["uri"] == "models:/fraud@champion"


@pytest.mark.parametrize("target", targets("the status subresource"), indirect=True)
def test_the_status_subresource_is_separate_from_the_main_endpoint(api: Api) -> None:
    created = api.create({**rollout("fraud"), "status": {"phase": "Succeeded"}})
    assert "status" not in created  # create cannot set status
    main = api.patch("fraud", {"spec": {"paused": True}, "status": {"phase": "Failed"}})
    assert "status" not in main
    assert main["metadata"]["generation"] == 2
    status = api.patch_status(
        "fraud",
        {
            "status": {"phase": "Progressing", "canaryWeight": 20},
            "spec": {"paused": False},
            "metadata": {"labels": {"ignored": "yes"}},
        },
    )
    assert status["status"] == {"phase": "Progressing", "canaryWeight": 20}
    assert status["spec"]["paused"] is True
    assert "labels" not in status["metadata"]
    assert status["metadata"]["generation"] == 2
    assert int(status["metadata"]["resourceVersion"]) > int(main["metadata"]["resourceVersion"])
    got = api.custom.get_namespaced_custom_object_status(
        GROUP, VERSION, api.namespace, PLURAL, "fraud"
    )
    assert got["status"]["phase"] == "Progressing"


@pytest.mark.parametrize("target", targets("generation"), indirect=True)
def test_generation_counts_changes_outside_metadata_and_status(api: Api) -> None:
    api.create(rollout("fraud"))
    assert api.patch("fraud", {"metadata": {"labels": {"a": "b"}}})["metadata"]["generation"] == 1
    assert api.patch("fraud", {"spec": {"paused": True}})["metadata"]["generation"] == 2
    assert api.patch("fraud", {"spec": {"paused": True}})["metadata"]["generation"] == 2
    assert api.patch_status("fraud", {"status": {"phase": "Paused"}})["metadata"]["generation"] == 2
    api.extensions.create_custom_resource_definition(gadget_crd(status=False))
    try:  # with no status subresource, a status change is a change like any other
        gadgets: dict[str, Any] = {
            "group": TEST_GROUP,
            "version": "v1",
            "namespace": api.namespace,
            "plural": "gadgets",
        }
        api.custom.create_namespaced_custom_object(
            **gadgets,
            body={
                "apiVersion": f"{TEST_GROUP}/v1",
                "kind": "Gadget",
                "metadata": {"name": "g"},
                "spec": {"replicas": 1},
            },
        )
        changed = api.custom.patch_namespaced_custom_object(
            **gadgets, name="g", body={"status": {"ok": True}}, _content_type=MERGE
        )
        assert changed["metadata"]["generation"] == 2
        assert changed["spec"]["colour"] == "blue"  # a default
    finally:
        api.extensions.delete_custom_resource_definition(f"gadgets.{TEST_GROUP}")


@pytest.mark.parametrize("target", targets("dryRun"), indirect=True)
def test_dry_run_validates_and_answers_but_stores_nothing(api: Api) -> None:
    before = api.list()["metadata"]["resourceVersion"]
    created = api.create(rollout("dry"), dry_run="All")
    assert created["metadata"]["uid"]
    code, _status, _ = failure(
        lambda: api.create(rollout("dry", strategy={"steps": [{"setWeight": -1}]}), dry_run="All")
    )
    assert code == 422
    assert failure(lambda: api.get("dry"))[0] == 404
    real = api.create(rollout("real"))
    version = real["metadata"]["resourceVersion"]
    assert api.patch("real", {"spec": {"paused": True}}, dry_run="All")["spec"]["paused"] is True
    api.custom.delete_namespaced_custom_object(
        GROUP, VERSION, api.namespace, PLURAL, "real", dry_run="All"
    )
    assert api.get("real") == real
    assert list(api.events(version)) == []
    assert int(version) == int(before) + 1


# ------------------------------------------------------------------ selectors


@pytest.mark.parametrize("target", targets("label selectors"), indirect=True)
def test_label_selectors_with_every_operator(api: Api) -> None:
    labels = {
        "a": {"tier": "web", "env": "prod"},
        "b": {"tier": "db", "env": "prod"},
        "c": {"tier": "web"},
        "d": {},
    }
    for name, found in labels.items():
        api.core.create_namespaced_config_map(
            api.namespace, {"metadata": {"name": name, "labels": found}}
        )

    def names(selector: str) -> list[str]:
        items = api.core.list_namespaced_config_map(api.namespace, label_selector=selector).items
        return sorted(i.metadata.name for i in items)

    assert names("tier=web") == ["a", "c"]
    assert names("tier==web,env=prod") == ["a"]
    assert names("tier!=web") == ["b", "d"]
    assert names("tier in (db, web),env") == ["a", "b"]
    assert names("tier notin (web)") == ["b", "d"]
    assert names("env") == ["a", "b"]
    assert names("!env") == ["c", "d"]
    code, status, _ = failure(lambda: names("tier in (web"))
    assert (code, status["reason"]) == (400, "BadRequest")


@pytest.mark.parametrize("target", targets("field selectors"), indirect=True)
def test_field_selectors_on_names_and_on_events(api: Api) -> None:
    for name in ("x", "y"):
        api.create(rollout(name))
    found = api.list(field_selector="metadata.name=y")["items"]
    assert [i["metadata"]["name"] for i in found] == ["y"]
    assert [
        i["metadata"]["name"] for i in api.list(field_selector="metadata.name!=y")["items"]
    ] == ["x"]
    for name, (involved, reason, kind) in {
        "e1": ("x", "Promoted", "Normal"),
        "e2": ("y", "RolledBack", "Warning"),
    }.items():
        api.core.create_namespaced_event(
            api.namespace,
            {
                "metadata": {"name": name},
                "reason": reason,
                "type": kind,
                "message": "m",
                "involvedObject": {
                    "kind": "ModelRollout",
                    "name": involved,
                    "namespace": api.namespace,
                },
            },
        )

    def events(selector: str) -> list[str]:
        items = api.core.list_namespaced_event(api.namespace, field_selector=selector).items
        return sorted(i.metadata.name for i in items)

    assert events("involvedObject.name=x") == ["e1"]
    assert events("reason=RolledBack,type=Warning") == ["e2"]
    assert events("involvedObject.kind=ModelRollout") == ["e1", "e2"]
    assert failure(lambda: api.list(field_selector="spec.paused=true"))[0] == 400


# ------------------------------------------------------------------ watch


@pytest.mark.parametrize("target", targets("watch from a resourceVersion"), indirect=True)
def test_a_watch_from_a_resource_version_replays_what_followed_it(api: Api) -> None:
    since = api.create(rollout("fraud"))["metadata"]["resourceVersion"]
    api.patch("fraud", {"spec": {"paused": True}})
    api.patch_status("fraud", {"status": {"phase": "Paused"}})
    api.custom.delete_namespaced_custom_object(GROUP, VERSION, api.namespace, PLURAL, "fraud")
    seen = [(e["type"], e["object"]) for e in api.events(since)]
    assert [t for t, _ in seen] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert seen[0][1]["spec"]["paused"] is True
    assert seen[2][1]["status"] == {"phase": "Paused"}  # the final state
    versions = [int(o["metadata"]["resourceVersion"]) for _, o in seen]
    assert versions == sorted(versions)
    assert versions[0] > int(since)


@pytest.mark.parametrize(
    "target", targets("initial ADDED events and namespace scoping"), indirect=True
)
def test_a_watch_starts_with_every_object_and_sees_only_its_namespace(api: Api) -> None:
    api.create(rollout("a"))
    api.create(rollout("b"))
    other = f"{api.namespace}-other"
    api.core.create_namespace({"metadata": {"name": other}})
    api.custom.create_namespaced_custom_object(GROUP, VERSION, other, PLURAL, rollout("c"))
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in api.events(None)]
    assert seen == [("ADDED", "a"), ("ADDED", "b")]
    everywhere = api.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    assert {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere} >= {
        (api.namespace, "a"),
        (other, "c"),
    }
    stream = watch.Watch().stream(
        api.custom.list_cluster_custom_object,
        GROUP,
        VERSION,
        PLURAL,
        timeout_seconds=1,
        _request_timeout=api.target.watch_guard,
    )
    assert {(api.namespace, "b"), (other, "c")} <= {
        (e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"]) for e in stream
    }


@pytest.mark.parametrize("target", targets("selectors on watches"), indirect=True)
def test_a_watch_with_a_label_selector_sees_objects_enter_and_leave(api: Api) -> None:
    since = api.create(rollout("fraud"))["metadata"]["resourceVersion"]
    api.patch("fraud", {"metadata": {"labels": {"stage": "canary"}}})
    api.patch("fraud", {"spec": {"paused": True}})
    api.patch("fraud", {"metadata": {"labels": {"stage": "stable"}}})
    seen = [e["type"] for e in api.events(since, label_selector="stage=canary")]
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


@pytest.mark.parametrize("target", targets("watch timeoutSeconds"), indirect=True)
def test_a_watch_ends_cleanly_after_timeout_seconds(api: Api) -> None:
    started = time.monotonic()
    assert list(api.events(None)) == []
    assert 0.9 < time.monotonic() - started < 3


@pytest.mark.parametrize(
    "short_target", targets("410 Expired for an old resourceVersion"), indirect=True
)
def test_a_watch_from_a_version_older_than_the_history_is_410_expired(short_api: Api) -> None:
    api = short_api
    first = api.create(rollout("fraud"))["metadata"]["resourceVersion"]
    for weight in range(25):
        api.patch_status("fraud", {"status": {"canaryWeight": weight}})
    code, _, exc = failure(lambda: list(api.events(first)))
    assert code == 410
    assert re.fullmatch(rf"Expired: too old resource version: {first} \(\d+\)", exc.reason)
    recent = api.get("fraud")["metadata"]["resourceVersion"]
    assert list(api.events(recent)) == []


@pytest.mark.parametrize("short_target", targets("BOOKMARK events"), indirect=True)
def test_a_watch_that_allows_bookmarks_gets_them(short_api: Api) -> None:
    api = short_api
    current = api.create(rollout("fraud"))["metadata"]["resourceVersion"]
    events = list(api.events(current, allow_watch_bookmarks=True))
    assert {e["type"] for e in events} == {"BOOKMARK"}
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(current)


# ------------------------------------------------------------------ deletion


@pytest.mark.parametrize("target", targets("finalizers and deletionTimestamp"), indirect=True)
def test_finalizers_hold_an_object_until_the_last_one_is_removed(api: Api) -> None:
    body = rollout("held")
    body["metadata"]["finalizers"] = ["modelrollout.io/cleanup"]
    since = api.create(body)["metadata"]["resourceVersion"]
    deleting = api.custom.delete_namespaced_custom_object(
        GROUP, VERSION, api.namespace, PLURAL, "held"
    )
    meta = deleting["metadata"]
    assert RFC3339.fullmatch(meta["deletionTimestamp"])
    assert meta["deletionGracePeriodSeconds"] == 0
    assert meta["generation"] == 2
    assert api.get("held")["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]
    code, status, _ = failure(
        lambda: api.patch(
            "held", {"metadata": {"finalizers": ["modelrollout.io/cleanup", "x.io/more"]}}
        )
    )
    assert code == 422
    assert status["details"]["causes"][0]["reason"] == "FieldValueForbidden"
    api.patch("held", {"metadata": {"finalizers": None}})
    assert failure(lambda: api.get("held"))[0] == 404
    assert [e["type"] for e in api.events(since)] == ["MODIFIED", "MODIFIED", "DELETED"]


def _configmap(
    api: Api, name: str, *owners: Any, finalizers: tuple[str, ...] = (), block: bool = False
) -> Any:
    refs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": o.metadata.name,
            "uid": o.metadata.uid,
            "blockOwnerDeletion": block,
        }
        for o in owners
    ]
    meta: dict[str, Any] = {"name": name, "ownerReferences": refs}
    if finalizers:
        meta["finalizers"] = list(finalizers)
    return api.core.create_namespaced_config_map(api.namespace, {"metadata": meta})


def _names(api: Api) -> set[str]:
    return {i.metadata.name for i in api.core.list_namespaced_config_map(api.namespace).items}


@pytest.mark.parametrize("target", targets("ownerReference garbage collection"), indirect=True)
def test_deleting_an_owner_collects_its_dependents(api: Api) -> None:
    owner, other = _configmap(api, "owner"), _configmap(api, "other")
    _configmap(api, "child", owner)
    _configmap(api, "grandchild", api.core.read_namespaced_config_map("child", api.namespace))
    _configmap(api, "shared", owner, other)
    _configmap(api, "held", owner, finalizers=("x.io/hold",))
    api.core.delete_namespaced_config_map("owner", api.namespace)
    assert _names(api) == {"other", "shared", "held"}
    shared = api.core.read_namespaced_config_map("shared", api.namespace)
    assert [r.name for r in shared.metadata.owner_references] == ["other"]
    held = api.core.read_namespaced_config_map("held", api.namespace)
    assert held.metadata.deletion_timestamp is not None


@pytest.mark.parametrize("target", targets("Orphan and Foreground propagation"), indirect=True)
def test_orphan_and_foreground_propagation(api: Api) -> None:
    owner = _configmap(api, "owner")
    _configmap(api, "orphan", owner)
    api.core.delete_namespaced_config_map("owner", api.namespace, propagation_policy="Orphan")
    orphan = api.core.read_namespaced_config_map("orphan", api.namespace)
    assert orphan.metadata.owner_references is None
    owner = _configmap(api, "owner2")
    _configmap(api, "blocker", owner, finalizers=("x.io/hold",), block=True)
    api.core.delete_namespaced_config_map("owner2", api.namespace, propagation_policy="Foreground")
    waiting = api.core.read_namespaced_config_map("owner2", api.namespace)
    assert waiting.metadata.finalizers == ["foregroundDeletion"]
    api.core.patch_namespaced_config_map(
        "blocker", api.namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    assert _names(api) == {"orphan"}


@pytest.mark.parametrize("target", targets("namespace lifecycle"), indirect=True)
def test_deleting_a_namespace_deletes_what_is_in_it(api: Api) -> None:
    api.create(rollout("fraud"))
    api.core.create_namespaced_secret(
        api.namespace, {"metadata": {"name": "s"}, "stringData": {"token": "t"}}
    )
    secret = api.core.read_namespaced_secret("s", api.namespace)
    assert base64.b64decode(secret.data["token"]) == b"t"
    answer = api.core.delete_namespace(api.namespace, _preload_content=False)
    assert yaml.safe_load(answer.data)["status"]["phase"] == "Terminating"
    assert failure(lambda: api.core.read_namespace(api.namespace))[0] == 404
    assert failure(lambda: api.get("fraud"))[0] == 404
    assert api.core.list_namespaced_secret(api.namespace).items == []


@pytest.mark.parametrize("target", targets("deletecollection with selectors"), indirect=True)
def test_delete_collection_removes_what_the_selector_matches(api: Api) -> None:
    for name, stage in (("a", "canary"), ("b", "canary"), ("c", "stable")):
        body = rollout(name)
        body["metadata"]["labels"] = {"stage": stage}
        api.create(body)
    api.custom.delete_collection_namespaced_custom_object(
        GROUP, VERSION, api.namespace, PLURAL, label_selector="stage=canary"
    )
    assert [i["metadata"]["name"] for i in api.list()["items"]] == ["c"]


# ------------------------------------------------------------------ CRDs


@pytest.mark.parametrize("target", targets("CRD registration and discovery"), indirect=True)
def test_a_crd_is_established_served_and_removed_with_its_objects(api: Api) -> None:
    created = api.extensions.create_custom_resource_definition(gadget_crd(status=True))
    conditions = {c.type: c.status for c in created.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    resources = client.CustomObjectsApi(api.client).get_api_resources(TEST_GROUP, "v1")
    assert {r.name: r.kind for r in resources.resources} == {
        "gadgets": "Gadget",
        "gadgets/status": "Gadget",
    }
    api.custom.create_namespaced_custom_object(
        TEST_GROUP,
        "v1",
        api.namespace,
        "gadgets",
        {"apiVersion": f"{TEST_GROUP}/v1", "kind": "Gadget", "metadata": {"name": "g"}},
    )
    api.extensions.delete_custom_resource_definition(f"gadgets.{TEST_GROUP}")
    code, _, _ = failure(
        lambda: api.custom.list_namespaced_custom_object(TEST_GROUP, "v1", api.namespace, "gadgets")
    )
    assert code == 404
    api.extensions.create_custom_resource_definition(gadget_crd(status=True))
    try:
        again = api.custom.list_namespaced_custom_object(TEST_GROUP, "v1", api.namespace, "gadgets")
        assert again["items"] == []
        updated = gadget_crd(status=True)
        spec = updated["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["colour"]["default"] = "green"
        current = api.extensions.read_custom_resource_definition(f"gadgets.{TEST_GROUP}")
        updated["metadata"]["resourceVersion"] = current.metadata.resource_version
        replaced = api.extensions.replace_custom_resource_definition(
            f"gadgets.{TEST_GROUP}", updated
        )
        assert replaced.metadata.generation == 2
        made = api.custom.create_namespaced_custom_object(
            TEST_GROUP,
            "v1",
            api.namespace,
            "gadgets",
            {
                "apiVersion": f"{TEST_GROUP}/v1",
                "kind": "Gadget",
                "metadata": {"name": "h"},
                "spec": {},
            },
        )
        assert made["spec"] == {"colour": "green"}
    finally:
        api.extensions.delete_custom_resource_definition(f"gadgets.{TEST_GROUP}")


@pytest.mark.parametrize("target", targets("CRD validation"), indirect=True)
def test_an_invalid_crd_is_422(api: Api) -> None:
    crd = gadget_crd(status=False)
    crd["spec"]["versions"][0]["storage"] = False
    crd["metadata"]["name"] = "wrong.test.modelrollout.io"
    code, status, _ = failure(lambda: api.extensions.create_custom_resource_definition(crd))
    assert code == 422
    assert {c["field"] for c in status["details"]["causes"]} == {"metadata.name", "spec.versions"}


@pytest.mark.parametrize("target", targets("health endpoints"), indirect=True)
def test_health_and_version_endpoints(target: Target) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        with urllib.request.urlopen(target.url + path, timeout=5) as answer:
            assert (answer.status, answer.read()) == (200, b"ok")
    api_client = config.new_client_from_config(str(target.kubeconfig))
    found = client.VersionApi(api_client).get_code()
    api_client.close()
    assert (found.major, found.minor) == ("1", "32")


# ------------------------------------------------------------------ tables and OpenAPI


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.mark.parametrize("target", targets("server-side table output"), indirect=True)
def test_lists_answer_as_a_table_with_the_printer_columns(api: Api) -> None:
    api.create(rollout("tabled"))
    api.patch_status("tabled", {"status": {"phase": "Progressing", "canaryWeight": 25}})
    request = urllib.request.Request(
        f"{api.target.url}/apis/{GROUP}/{VERSION}/namespaces/{api.namespace}/{PLURAL}",
        headers={"Accept": TABLE},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        table = json.loads(answer.read())
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"] if c.get("priority", 0) == 0]
    assert names == ["Name", "Phase", "Weight", "Stable", "Canary", "Ready", "Age"]
    (row,) = table["rows"]
    assert row["cells"][:3] == ["tabled", "Progressing", 25]
    assert row["object"]["metadata"]["name"] == "tabled"


@pytest.mark.parametrize("target", targets("an OpenAPI v3 document of the CRDs"), indirect=True)
def test_openapi_v3_serves_the_crd_schemas_for_kubectl_explain(target: Target) -> None:
    with urllib.request.urlopen(f"{target.url}/openapi/v3", timeout=5) as answer:
        paths = json.loads(answer.read())["paths"]
    url = paths[f"apis/{GROUP}/{VERSION}"]["serverRelativeURL"]
    with urllib.request.urlopen(target.url + url, timeout=5) as answer:
        document = json.loads(answer.read())
    schemas = document["components"]["schemas"]
    (rollout_schema,) = [
        schema
        for schema in schemas.values()
        if {"group": GROUP, "version": VERSION, "kind": "ModelRollout"}
        in schema.get("x-kubernetes-group-version-kind", [])
    ]
    assert "strategy" in rollout_schema["properties"]["spec"]["properties"]


# ------------------------------------------------------------------ admin: faults and audit


@pytest.mark.parametrize("target", targets("fault injection"), indirect=True)
def test_injected_faults_answer_the_next_matching_calls(api: Api) -> None:
    admin = api.target.admin
    api.create(rollout("fraud"))
    admin.inject_fault(
        verb="patch", group=GROUP, resource=PLURAL, namespace=api.namespace, code=409
    )
    admin.inject_fault(
        verb="create", group=GROUP, resource=PLURAL, code=429, retry_after_seconds=7
    )  # not a GET: urllib3 would wait and retry it
    admin.inject_fault(
        verb="list", group=GROUP, resource=PLURAL, namespace=api.namespace, code=500, count=2
    )
    code, status, _ = failure(lambda: api.patch("fraud", {"spec": {"paused": True}}))
    assert (code, status["reason"]) == (409, "Conflict")
    assert api.patch("fraud", {"spec": {"paused": True}})["spec"]["paused"] is True
    code, status, exc = failure(lambda: api.create(rollout("second")))
    assert (code, status["reason"], status["details"]["retryAfterSeconds"]) == (
        429,
        "TooManyRequests",
        7,
    )
    assert exc.headers["Retry-After"] == "7"
    assert failure(lambda: api.get("second"))[0] == 404
    for _ in range(2):
        code, status, _ = failure(api.list)
        assert (code, status["reason"]) == (500, "InternalError")
    assert api.list()["items"]
    admin.inject_fault(
        verb="patch",
        group=GROUP,
        resource=PLURAL,
        subresource="status",
        code=504,
        delay_seconds=0.3,
    )
    started = time.monotonic()
    code, status, _ = failure(lambda: api.patch_status("fraud", {"status": {"phase": "Paused"}}))
    assert (code, status["reason"]) == (504, "Timeout")
    assert time.monotonic() - started >= 0.3
    assert "status" not in api.get("fraud")
    admin.inject_fault(verb="get", group=GROUP, resource=PLURAL, name="fraud", code=500)
    admin.clear_faults()
    assert api.get("fraud")["metadata"]["name"] == "fraud"


@pytest.mark.parametrize("target", targets("the audit log"), indirect=True)
def test_the_audit_log_records_each_call_with_its_verb_and_code(api: Api) -> None:
    admin = api.target.admin
    api.client.user_agent = "audit-test/1.0"
    admin.clear_audit()
    api.create(rollout("fraud"))
    api.get("fraud")
    api.list()
    api.patch_status("fraud", {"status": {"phase": "Paused"}})
    failure(lambda: api.get("missing"))
    api.custom.delete_namespaced_custom_object(GROUP, VERSION, api.namespace, PLURAL, "fraud")
    mine = [e for e in admin.audit() if e["userAgent"] == "audit-test/1.0"]
    assert [(e["verb"], e["subresource"], e["name"], e["code"]) for e in mine] == [
        ("create", "", "", 201),
        ("get", "", "fraud", 200),
        ("list", "", "", 200),
        ("patch", "status", "fraud", 200),
        ("get", "", "missing", 404),
        ("delete", "", "fraud", 200),
    ]
    assert {(e["group"], e["resource"], e["namespace"]) for e in mine} == {
        (GROUP, PLURAL, api.namespace)
    }


# ------------------------------------------------------------------ kubernetes_asyncio


@pytest.mark.asyncio
@pytest.mark.parametrize("target", targets("CRUD semantics"), indirect=True)
async def test_the_asyncio_client_creates_patches_watches_and_deletes(target: Target) -> None:
    from kubernetes_asyncio import client as aclient
    from kubernetes_asyncio import config as aconfig
    from kubernetes_asyncio import watch as awatch

    configuration = aclient.Configuration()
    await aconfig.load_kube_config(
        config_file=str(target.kubeconfig), client_configuration=configuration
    )
    async with aclient.ApiClient(configuration) as api_client:
        core, custom = aclient.CoreV1Api(api_client), aclient.CustomObjectsApi(api_client)
        namespace = f"a-{uuid.uuid4().hex[:10]}"
        if target.kind == "emulator":
            await core.create_namespace({"metadata": {"name": namespace}})
        created = await custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, rollout("fraud")
        )
        since = created["metadata"]["resourceVersion"]
        with pytest.raises(aclient.ApiException) as caught:
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, rollout("fraud")
            )
        assert caught.value.status == 409
        patched = await custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "fraud",
            {"spec": {"paused": True}},
            _content_type=MERGE,
        )
        assert patched["metadata"]["generation"] == 2
        status = await custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "fraud",
            {"status": {"phase": "Paused"}},
            _content_type=MERGE,
        )
        assert status["status"] == {"phase": "Paused"}
        with pytest.raises(aclient.ApiException) as caught:
            await custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                "fraud",
                {"spec": {"strategy": {"steps": [{"setWeight": 101}]}}},
                _content_type=MERGE,
            )
        assert caught.value.status == 422
        await custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fraud")
        seen = []
        async with awatch.Watch() as stream:
            async for event in stream.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                resource_version=since,
                timeout_seconds=1,
                _request_timeout=target.watch_guard,
            ):
                seen.append(event["type"])
        assert seen == ["MODIFIED", "MODIFIED", "DELETED"]
