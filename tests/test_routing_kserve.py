"""The KServe routers: the patches they send, what they read back, and validity for KServe.

Covers:
- the merge-patch helpers (RFC 7386 cases; ``merge_patch`` round-trips);
- per router, a table of starting InferenceServices and calls with the exact merge patch each
  call makes (nothing when nothing changes), and the create body when the object is absent;
- per router, a table of hand-written InferenceServices and the split ``observe`` reports;
- the routers end to end against an in-memory API behind a real ``kubernetes.ApiClient``:
  requests, ``application/merge-patch+json``, the user agent, no ownerReference, errors;
- every InferenceService the routers create, and every object after one of their patches,
  is valid (nothing pruned, no schema error) for our CRD and for KServe's own CRD, read from
  ``../shared/kserve/`` (in CI its absence fails; elsewhere the check is skipped, and said).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kserve_crds import OUR_CRD, UPSTREAM_CRD, assert_valid, load_crd, openapi, require_upstream
from modelrollout import __version__, schema, serde
from modelrollout.api import ModelVersionRef
from modelrollout.decision import RouteObservation
from modelrollout.errors import RouterError
from modelrollout.routing import kserve, kserve_raw, kserve_serverless
from modelrollout.routing.base import RouteTarget
from modelrollout.routing.kserve import STABLE_STORAGE_URI
from modelrollout.serde import apply_merge_patch, merge_patch

S = ModelVersionRef("models:/fraud/1", "s3://models/fraud/1", "fraud", "1")
C = ModelVersionRef("models:/fraud/2", "s3://models/fraud/2", "fraud", "2")
TEMPLATE = {
    "model": {
        "modelFormat": {"name": "sklearn"},
        "protocolVersion": "v2",
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": 1}},
        "env": [{"name": "MLFLOW_TRACKING_URI", "value": "http://127.0.0.1:5000"}],
    },
    "minReplicas": 1,
    "nodeSelector": {"pool": "cpu"},
}
TARGET = RouteTarget("shop", "fraud", TEMPLATE)


# ---------------------------------------------------------------- CRD validity


def test_the_upstream_crd_is_there_to_validate_against() -> None:
    require_upstream()


def test_our_crd_names_and_printer_columns_match_kserve() -> None:
    crd = load_crd(OUR_CRD)
    assert crd["metadata"]["name"] == "inferenceservices.serving.kserve.io"
    assert crd["spec"]["names"]["shortNames"] == ["isvc"]
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == [
        "URL",
        "Ready",
        "Prev",
        "Latest",
        "PrevRolledoutRevision",
        "LatestReadyRevision",
        "Age",
    ]
    if UPSTREAM_CRD.exists():
        upstream = load_crd(UPSTREAM_CRD)
        (theirs,) = upstream["spec"]["versions"]
        assert crd["spec"]["names"] == upstream["spec"]["names"]
        mine = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
        assert mine == {c["name"]: c["jsonPath"] for c in theirs["additionalPrinterColumns"]}


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("spec.predictor.canaryTrafficPercent", 101),
        ("spec.predictor.canaryTrafficPercent", -1),
        ("spec.canary[0].trafficPercent", 101),
    ],
)
def test_our_crd_bounds_traffic_percentages(where: str, value: int) -> None:
    obj = isvc(S.storage_uri, raw=True, canary=(C.storage_uri, 10))
    obj["spec"]["predictor"]["canaryTrafficPercent"] = 0
    if where.startswith("spec.canary"):
        obj["spec"]["canary"][0]["trafficPercent"] = value
    else:
        obj["spec"]["predictor"]["canaryTrafficPercent"] = value
    assert [e.path for e in schema.validate(openapi(OUR_CRD), obj)] == [where]


# ---------------------------------------------------------------- merge patches


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_apply_merge_patch_follows_rfc_7386(
    target: dict[str, Any], patch: dict[str, Any], result: dict[str, Any]
) -> None:
    before = copy.deepcopy(target)
    assert apply_merge_patch(target, patch) == result
    assert target == before


_json_leaf = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3))
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=12,
)


@given(
    st.dictionaries(st.text(max_size=2), _json, max_size=4),
    st.dictionaries(st.text(max_size=2), _json, max_size=4),
)
def test_merge_patch_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    patch = merge_patch(old, new)
    assert apply_merge_patch(old, patch) == new
    assert merge_patch(new, new) == {}


# ---------------------------------------------------------------- hand-written objects


def isvc(
    uri: str,
    *,
    percent: int | None = None,
    stable: str | None = None,
    raw: bool = False,
    canary: tuple[str, int] | None = None,
    generation: int = 1,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An InferenceService as the API server would return it."""
    annotations = {kserve.MANAGED_BY: kserve.MANAGER}
    if stable is not None:
        annotations[STABLE_STORAGE_URI] = stable
    if raw:
        annotations[kserve.DEPLOYMENT_MODE] = kserve.RAW_DEPLOYMENT
    predictor = kserve.predictor_with_model(TEMPLATE, uri)
    if percent is not None:
        predictor["canaryTrafficPercent"] = percent
    obj: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "fraud",
            "namespace": "shop",
            "generation": generation,
            "resourceVersion": "7",
            "uid": "4a9ad1b4-0d6a-4f2e-9a56-3b1c2f1d0e11",
            "creationTimestamp": "2026-01-05T10:00:00Z",
            "labels": {kserve.MANAGED_BY: kserve.MANAGER},
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }
    if canary is not None:
        obj["spec"]["canary"] = [{"predictor": raw_canary(canary[0]), "trafficPercent": canary[1]}]
    if status is not None:
        obj["status"] = status
    return obj


def _conditions(ready: bool) -> list[dict[str, Any]]:
    value = "True" if ready else "False"
    return [
        {"type": kind, "status": value, "lastTransitionTime": "2026-01-05T10:00:01Z"}
        for kind in ("IngressReady", "PredictorReady", "Ready")
    ]


def serverless_status(
    *traffic: tuple[str, str, int],
    observed: int = 1,
    created: str = "fraud-predictor-00001",
    latest_ready: str | None = None,
    rolled: str = "fraud-predictor-00001",
    ready: bool = True,
) -> dict[str, Any]:
    """``traffic`` as (tag, revision, percent); the ``latest`` tag is the latestRevision one."""
    entries = [
        {
            "tag": tag,
            "revisionName": revision,
            "latestRevision": tag == "latest",
            "percent": percent,
            "url": f"http://{tag}-fraud-predictor-shop.sandbox.local",
        }
        for tag, revision, percent in traffic
    ]
    return {
        "observedGeneration": observed,
        "url": "http://fraud-shop.sandbox.local",
        "address": {"url": "http://fraud.shop.svc.sandbox.local"},
        "deploymentMode": "Serverless",
        "conditions": _conditions(ready),
        "components": {
            "predictor": {
                "latestCreatedRevision": created,
                "latestReadyRevision": latest_ready or created,
                "latestRolledoutRevision": rolled,
                "traffic": entries,
            }
        },
    }


def raw_canary(uri: str, name: str = "v2") -> dict[str, Any]:
    """The canary predictor the raw router derives from the template's predictor."""
    return serde.deep_merge(
        TEMPLATE, {"name": name, "model": {"storageUri": uri, "name": "kserve-container"}}
    )


def raw_status(
    canary: tuple[bool, int] | None = None,
    *,
    observed: int = 1,
    ready: bool = True,
    name: str = "v2",
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "url": "http://fraud-shop.sandbox.local",
        "deploymentMode": "RawDeployment",
        "conditions": _conditions(ready),
        "components": {"predictor": {"url": "http://fraud-predictor-shop.sandbox.local"}},
    }
    if canary is not None:
        status["canaryStatuses"] = [{"name": name, "ready": canary[0], "trafficPercent": canary[1]}]
    return status


R1, R2, R3 = (f"fraud-predictor-0000{i}" for i in (1, 2, 3))

SERVERLESS_OBSERVED = {
    "one model, ready": (
        isvc(S.storage_uri, stable=S.storage_uri, status=serverless_status(("latest", R1, 100))),
        RouteObservation(S.storage_uri, None, 0, True),
    ),
    "just created, no status": (
        isvc(S.storage_uri),
        RouteObservation(S.storage_uri, None, 0, False),
    ),
    "spec changed, status not caught up": (
        isvc(S.storage_uri, generation=2, status=serverless_status(("latest", R1, 100))),
        RouteObservation(S.storage_uri, None, 0, False),
    ),
    "Ready condition False": (
        isvc(S.storage_uri, status=serverless_status(("latest", R1, 100), ready=False)),
        RouteObservation(S.storage_uri, None, 0, False),
    ),
    "canary at 10%": (
        isvc(
            C.storage_uri,
            percent=10,
            stable=S.storage_uri,
            generation=2,
            status=serverless_status(("latest", R2, 10), ("prev", R1, 90), observed=2, created=R2),
        ),
        RouteObservation(S.storage_uri, C.storage_uri, 10, True),
    ),
    "canary revision not ready: Knative keeps its share on the old revision": (
        isvc(
            C.storage_uri,
            percent=10,
            stable=S.storage_uri,
            generation=2,
            status=serverless_status(
                ("latest", R1, 10),
                ("prev", R1, 90),
                observed=2,
                created=R2,
                latest_ready=R1,
                ready=False,
            ),
        ),
        RouteObservation(S.storage_uri, C.storage_uri, 0, False),
    ),
    "canary at 0%": (
        isvc(
            C.storage_uri,
            percent=0,
            stable=S.storage_uri,
            generation=3,
            status=serverless_status(("latest", R2, 0), ("prev", R1, 100), observed=3, created=R2),
        ),
        RouteObservation(S.storage_uri, C.storage_uri, 0, True),
    ),
    "promoted, status still shows the split": (
        isvc(
            C.storage_uri,
            stable=S.storage_uri,
            generation=3,
            status=serverless_status(("latest", R2, 10), ("prev", R1, 90), observed=2, created=R2),
        ),
        RouteObservation(C.storage_uri, None, 0, False),
    ),
    "promoted": (
        isvc(
            C.storage_uri,
            stable=S.storage_uri,
            generation=3,
            status=serverless_status(("latest", R2, 100), observed=3, created=R2, rolled=R2),
        ),
        RouteObservation(C.storage_uri, None, 0, True),
    ),
    "restoring: the stable model's new revision is not ready yet": (
        isvc(
            S.storage_uri,
            percent=0,
            stable=S.storage_uri,
            generation=4,
            status=serverless_status(
                ("latest", R2, 0),
                ("prev", R1, 100),
                observed=4,
                created=R3,
                latest_ready=R2,
                ready=False,
            ),
        ),
        RouteObservation(S.storage_uri, S.storage_uri, 0, False),
    ),
}


@pytest.mark.parametrize(
    ("obj", "expected"), SERVERLESS_OBSERVED.values(), ids=SERVERLESS_OBSERVED.keys()
)
def test_serverless_observe_reads_what_kserve_reports(
    obj: dict[str, Any], expected: RouteObservation
) -> None:
    assert kserve_serverless.read_split(obj) == expected
    assert_valid(obj)


RAW_OBSERVED = {
    "one model, ready": (
        isvc(S.storage_uri, raw=True, status=raw_status()),
        RouteObservation(S.storage_uri, None, 0, True),
    ),
    "canary at 10%": (
        isvc(
            S.storage_uri,
            raw=True,
            canary=(C.storage_uri, 10),
            generation=2,
            status=raw_status((True, 10), observed=2),
        ),
        RouteObservation(S.storage_uri, C.storage_uri, 10, True),
    ),
    "canary not ready, no traffic on it": (
        isvc(
            S.storage_uri,
            raw=True,
            canary=(C.storage_uri, 10),
            generation=2,
            status=raw_status((False, 0), observed=2, ready=False),
        ),
        RouteObservation(S.storage_uri, C.storage_uri, 0, False),
    ),
    "weight changed, status not caught up": (
        isvc(
            S.storage_uri,
            raw=True,
            canary=(C.storage_uri, 20),
            generation=3,
            status=raw_status((True, 10), observed=2),
        ),
        RouteObservation(S.storage_uri, C.storage_uri, 10, False),
    ),
    "the status lists another canary only": (
        isvc(
            S.storage_uri,
            raw=True,
            canary=(C.storage_uri, 10),
            generation=2,
            status=raw_status((True, 10), observed=2, name="v9"),
        ),
        RouteObservation(S.storage_uri, C.storage_uri, 0, False),
    ),
    "promoted, status still lists the canary": (
        isvc(C.storage_uri, raw=True, generation=3, status=raw_status((True, 10), observed=2)),
        RouteObservation(C.storage_uri, None, 0, False),
    ),
}


@pytest.mark.parametrize(("obj", "expected"), RAW_OBSERVED.values(), ids=RAW_OBSERVED.keys())
def test_raw_observe_reads_what_kserve_reports(
    obj: dict[str, Any], expected: RouteObservation
) -> None:
    assert kserve_raw.read_split(obj) == expected
    assert_valid(obj)


# ---------------------------------------------------------------- patches


def _ready_after_restore() -> dict[str, Any]:
    status = serverless_status(("latest", R3, 0), ("prev", R1, 100), observed=4, created=R3)
    return isvc(S.storage_uri, percent=0, stable=S.storage_uri, generation=4, status=status)


SERVERLESS_PATCHES = {
    "a canary starts beside the stable model": (
        isvc(S.storage_uri),
        ("set_weight", S, C, 10),
        {
            "metadata": {"annotations": {STABLE_STORAGE_URI: S.storage_uri}},
            "spec": {
                "predictor": {"model": {"storageUri": C.storage_uri}, "canaryTrafficPercent": 10}
            },
        },
    ),
    "the next step changes only the weight": (
        isvc(C.storage_uri, percent=10, stable=S.storage_uri),
        ("set_weight", S, C, 25),
        {"spec": {"predictor": {"canaryTrafficPercent": 25}}},
    ),
    "the same weight again sends nothing": (
        isvc(C.storage_uri, percent=25, stable=S.storage_uri),
        ("set_weight", S, C, 25),
        {},
    ),
    "traffic back to stable": (
        isvc(C.storage_uri, percent=25, stable=S.storage_uri),
        ("set_weight", S, C, 0),
        {"spec": {"predictor": {"canaryTrafficPercent": 0}}},
    ),
    "promote the canary: its revision takes 100%": (
        isvc(C.storage_uri, percent=50, stable=S.storage_uri),
        ("promote", C),
        {"spec": {"predictor": {"canaryTrafficPercent": None}}},
    ),
    "promote a model that is not the canary": (
        isvc(S.storage_uri, stable=S.storage_uri),
        ("promote", C),
        {"spec": {"predictor": {"model": {"storageUri": C.storage_uri}}}},
    ),
    "promote what already serves alone sends nothing": (
        isvc(C.storage_uri, stable=S.storage_uri),
        ("promote", C),
        {},
    ),
    "restore, first call: the stable model's revision behind a 0% canary": (
        isvc(C.storage_uri, percent=0, stable=S.storage_uri),
        ("restore", S),
        {"spec": {"predictor": {"model": {"storageUri": S.storage_uri}}}},
    ),
    "restore waits while that revision is not ready": (
        isvc(
            S.storage_uri,
            percent=0,
            stable=S.storage_uri,
            generation=4,
            status=serverless_status(
                ("latest", R2, 0), ("prev", R1, 100), observed=4, created=R3, latest_ready=R2
            ),
        ),
        ("restore", S),
        {},
    ),
    "restore waits while KServe has not seen the spec": (
        isvc(
            S.storage_uri,
            percent=0,
            stable=S.storage_uri,
            generation=4,
            status=serverless_status(("latest", R2, 0), ("prev", R1, 100), observed=3, created=R2),
        ),
        ("restore", S),
        {},
    ),
    "restore, last call: the ready stable revision takes 100%": (
        _ready_after_restore(),
        ("restore", S),
        {"spec": {"predictor": {"canaryTrafficPercent": None}}},
    ),
    "restore what already serves alone sends nothing": (
        isvc(S.storage_uri, stable=S.storage_uri),
        ("restore", S),
        {},
    ),
    "restore from a canary that never got a weight of 0 first": (
        isvc(C.storage_uri, percent=30, stable=S.storage_uri),
        ("restore", S),
        {
            "spec": {
                "predictor": {"model": {"storageUri": S.storage_uri}, "canaryTrafficPercent": 0}
            }
        },
    ),
}

RAW_CANARY = {"predictor": raw_canary(C.storage_uri), "trafficPercent": 10}

RAW_PATCHES = {
    "a canary starts beside the stable model": (
        isvc(S.storage_uri, raw=True),
        ("set_weight", S, C, 10),
        {"spec": {"canary": [RAW_CANARY]}},
    ),
    "the next step sends the canary list with the new weight": (
        isvc(S.storage_uri, raw=True, canary=(C.storage_uri, 10)),
        ("set_weight", S, C, 30),
        {"spec": {"canary": [{**RAW_CANARY, "trafficPercent": 30}]}},
    ),
    "the same weight again sends nothing": (
        isvc(S.storage_uri, raw=True, canary=(C.storage_uri, 10)),
        ("set_weight", S, C, 10),
        {},
    ),
    "promote: the canary's predictor, name included, becomes the predictor": (
        isvc(S.storage_uri, raw=True, canary=(C.storage_uri, 100)),
        ("promote", C),
        {
            "spec": {
                "predictor": {
                    "name": "v2",
                    "model": {"storageUri": C.storage_uri, "name": "kserve-container"},
                },
                "canary": None,
            }
        },
    ),
    "promote a model that is not the canary": (
        isvc(S.storage_uri, raw=True),
        ("promote", C),
        {"spec": {"predictor": {"model": {"storageUri": C.storage_uri}}}},
    ),
    "restore: the canary goes": (
        isvc(S.storage_uri, raw=True, canary=(C.storage_uri, 0)),
        ("restore", S),
        {"spec": {"canary": None}},
    ),
    "restore what already serves alone sends nothing": (
        isvc(S.storage_uri, raw=True),
        ("restore", S),
        {},
    ),
}


def _patch_for(module: Any, obj: dict[str, Any], call: tuple[Any, ...]) -> dict[str, Any]:
    name, *args = call
    function = "weight_patch" if name == "set_weight" else f"{name}_patch"
    patch: dict[str, Any] = getattr(module, function)(obj, *args)
    return patch


@pytest.mark.parametrize(
    ("obj", "call", "expected"), SERVERLESS_PATCHES.values(), ids=SERVERLESS_PATCHES.keys()
)
def test_serverless_router_patches(
    obj: dict[str, Any],
    call: tuple[Any, ...],
    expected: dict[str, Any],
) -> None:
    patch = _patch_for(kserve_serverless, obj, call)
    assert patch == expected
    assert_valid(apply_merge_patch(obj, patch))


@pytest.mark.parametrize(("obj", "call", "expected"), RAW_PATCHES.values(), ids=RAW_PATCHES.keys())
def test_raw_router_patches(
    obj: dict[str, Any],
    call: tuple[Any, ...],
    expected: dict[str, Any],
) -> None:
    patch = _patch_for(kserve_raw, obj, call)
    assert patch == expected
    assert_valid(apply_merge_patch(obj, patch))


@pytest.mark.parametrize(
    ("version", "name"),
    [("2", "v2"), ("17", "v17"), ("1.0_RC", "v1-0-rc"), (None, "m"), ("x" * 30, "m")],
)
def test_a_raw_canary_is_named_after_its_version(version: str | None, name: str) -> None:
    model = ModelVersionRef("models:/fraud/x", "s3://models/fraud/x", "fraud", version)
    found = kserve_raw.variant_name(model)
    assert found.startswith(name)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", found)


@pytest.mark.parametrize("raw", [False, True], ids=["serverless", "raw"])
@pytest.mark.parametrize("model", [S, C], ids=["stable", "canary"])
def test_create_body_serves_one_model_from_the_template(raw: bool, model: ModelVersionRef) -> None:
    body = kserve.create_body(TARGET, model, raw=raw)
    annotations = {kserve.MANAGED_BY: "modelrollout"}
    if raw:
        annotations[kserve.DEPLOYMENT_MODE] = "RawDeployment"
    else:
        annotations[STABLE_STORAGE_URI] = model.storage_uri
    assert body == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "fraud",
            "namespace": "shop",
            "labels": {kserve.MANAGED_BY: "modelrollout"},
            "annotations": annotations,
        },
        "spec": {"predictor": kserve.predictor_with_model(TEMPLATE, model.storage_uri)},
    }
    assert body["spec"]["predictor"]["model"]["modelFormat"] == {"name": "sklearn"}
    assert_valid(body)


def test_create_body_without_a_template_and_without_the_templates_traffic_field() -> None:
    bare = kserve.create_body(RouteTarget("shop", "fraud"), S, raw=False)
    assert bare["spec"] == {"predictor": {"model": {"storageUri": S.storage_uri}}}
    template = {**TEMPLATE, "canaryTrafficPercent": 10}
    body = kserve.create_body(RouteTarget("shop", "fraud", template), S, raw=False)
    assert "canaryTrafficPercent" not in body["spec"]["predictor"]
    assert TARGET.predictor is not None
    assert "storageUri" not in TARGET.predictor["model"]


# ---------------------------------------------------------------- end to end, in memory


class _Response:
    """What ``RESTClientObject.request`` returns, enough for ``ApiClient`` to read it."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.reason = {200: "OK", 201: "Created"}.get(status, "Error")
        self.data = json.dumps(body).encode()

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return "application/json" if name.lower() == "content-type" else default

    def getheaders(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}


class FakeKube(client.ApiClient):  # type: ignore[misc]
    """An ApiClient whose transport is a dict of InferenceServices: it records every request
    and applies merge patches the way the API server does (generation +1 on a spec change)."""

    PATH = re.compile(
        r"/apis/serving\.kserve\.io/v1beta1/namespaces/(?P<ns>[^/]+)/inferenceservices"
        r"(?:/(?P<name>[^/]+))?$"
    )

    def __init__(self) -> None:
        configuration = client.Configuration()
        configuration.host = "http://127.0.0.1:1"
        super().__init__(configuration)
        self.user_agent = f"modelrollout/{__version__}"
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str | None, Any]] = []
        self.fail_with: int | None = None

    def request(
        self,
        method: str,
        url: str,
        query_params: Any = None,
        headers: dict[str, str] | None = None,
        post_params: Any = None,
        body: Any = None,
        _preload_content: bool = True,
        _request_timeout: Any = None,
    ) -> _Response:
        headers = headers or {}
        path = url.removeprefix(self.configuration.host)
        self.requests.append((method, path, headers.get("Content-Type"), copy.deepcopy(body)))
        assert headers.get("User-Agent") == f"modelrollout/{__version__}"
        match = self.PATH.match(path)
        assert match is not None, path
        if self.fail_with is not None:
            raise ApiException(http_resp=_Response(self.fail_with, {"kind": "Status"}))
        key = (match["ns"], match["name"] or body["metadata"]["name"])
        if method == "POST":
            stored = copy.deepcopy(body)
            stored["metadata"].update(generation=1, resourceVersion="1")
            self.objects[key] = stored
            return _Response(201, stored)
        if key not in self.objects:
            raise ApiException(http_resp=_Response(404, {"kind": "Status", "code": 404}))
        if method == "PATCH":
            before = self.objects[key]
            after = apply_merge_patch(before, body)
            if after["spec"] != before["spec"]:
                after["metadata"]["generation"] += 1
            self.objects[key] = after
        return _Response(200, self.objects[key])


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.mark.asyncio
async def test_serverless_router_end_to_end_in_memory(kube: FakeKube) -> None:
    router = kserve_serverless.ServerlessRouter(kube)
    assert await router.observe(TARGET) is None
    await router.set_weight(TARGET, S, C, 10)
    get, create = kube.requests[-2:]
    assert get[:2] == (
        "GET",
        "/apis/serving.kserve.io/v1beta1/namespaces/shop/inferenceservices/fraud",
    )
    assert create[0] == "POST"
    assert create[3] == kserve.create_body(TARGET, S, raw=False)
    assert "ownerReferences" not in create[3]["metadata"]
    await router.set_weight(TARGET, S, C, 10)
    method, path, content_type, body = kube.requests[-1]
    assert (method, content_type) == ("PATCH", "application/merge-patch+json")
    assert path.endswith("/namespaces/shop/inferenceservices/fraud")
    assert body == {
        "spec": {"predictor": {"model": {"storageUri": C.storage_uri}, "canaryTrafficPercent": 10}}
    }
    stored = kube.objects[("shop", "fraud")]
    assert stored["metadata"]["generation"] == 2
    assert_valid(stored)
    observed = await router.observe(TARGET)
    assert observed == RouteObservation(S.storage_uri, C.storage_uri, 0, False)
    sent = len(kube.requests)
    await router.set_weight(TARGET, S, C, 10)
    assert len(kube.requests) == sent + 1, "a repeated call reads, and sends nothing"
    await router.promote(TARGET, C)
    assert kube.requests[-1][3] == {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    assert "canaryTrafficPercent" not in kube.objects[("shop", "fraud")]["spec"]["predictor"]


@pytest.mark.asyncio
async def test_raw_router_end_to_end_in_memory(kube: FakeKube) -> None:
    router = kserve_raw.RawRouter(kube)
    await router.promote(TARGET, S)
    created = kube.objects[("shop", "fraud")]
    assert created["metadata"]["annotations"][kserve.DEPLOYMENT_MODE] == "RawDeployment"
    await router.set_weight(TARGET, S, C, 20)
    assert kube.requests[-1][2] == "application/merge-patch+json"
    stored = kube.objects[("shop", "fraud")]
    assert stored["spec"]["canary"] == [{**RAW_CANARY, "trafficPercent": 20}]
    assert_valid(stored)
    await router.restore(TARGET, S)
    assert "canary" not in kube.objects[("shop", "fraud")]["spec"]
    assert await router.observe(TARGET) == RouteObservation(S.storage_uri, None, 0, False)


@pytest.mark.parametrize("status", [403, 500])
@pytest.mark.asyncio
async def test_api_errors_become_router_errors(kube: FakeKube, status: int) -> None:
    kube.fail_with = status
    router = kserve_serverless.ServerlessRouter(kube)
    with pytest.raises(RouterError, match=f"cannot read InferenceService shop/fraud: {status}"):
        await router.observe(TARGET)


@pytest.mark.asyncio
async def test_an_unreachable_api_is_a_router_error() -> None:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: nothing listens
    configuration.retries = 0
    api_client = client.ApiClient(configuration)
    try:
        with pytest.raises(RouterError, match="cannot be reached"):
            await kserve_raw.RawRouter(api_client).observe(TARGET)
    finally:
        api_client.close()
