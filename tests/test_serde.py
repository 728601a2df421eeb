"""serde: dataclasses to and from Kubernetes JSON.

Covers the camelCase mapping and explicit ``json`` names, ``None`` fields left
out of ``to_json``, tuples and lists, dict fields, enums (a bad value lists the
allowed ones), nested dataclasses, strict reading (unknown and missing fields
named by their exact path, ints and bools never confused), and a round trip of
a full spec and status.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from modelrollout import api, serde
from modelrollout.serde import SpecError


@dataclass(frozen=True)
class Inner:
    flag_value: bool = False


@dataclass(frozen=True)
class Sample:
    """Every shape serde reads, with one explicitly named field."""

    plain_name: int
    renamed_field: str = field(default="x", metadata={"json": "renamed"})
    maybe_text: str | None = None
    ratio: float = 0.0
    items: tuple[int, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    free: dict[str, Any] | None = None
    judge: api.Judge = api.Judge.THRESHOLD
    inner: Inner | None = None


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("name", "name"),
        ("set_weight", "setWeight"),
        ("progress_deadline_seconds", "progressDeadlineSeconds"),
        ("allowed_signers_secret_ref", "allowedSignersSecretRef"),
    ],
)
def test_camel_case(name: str, expected: str) -> None:
    assert serde.camel(name) == expected


def test_json_names_follow_camel_case_unless_a_field_names_its_own() -> None:
    names = [serde.json_name(f) for f in dataclasses.fields(Sample)]

    assert names == [
        "plainName",
        "renamed",
        "maybeText",
        "ratio",
        "items",
        "labels",
        "free",
        "judge",
        "inner",
    ]


def test_explicit_json_name_is_read_and_written() -> None:
    read = serde.from_json(Sample, {"plainName": 1, "renamed": "y"})

    assert read.renamed_field == "y"
    assert serde.to_json(read)["renamed"] == "y"
    assert "renamedField" not in serde.to_json(read)


def test_the_python_name_of_a_renamed_field_is_an_unknown_field() -> None:
    with pytest.raises(SpecError) as caught:
        serde.from_json(Sample, {"plainName": 1, "renamedField": "y"})

    assert caught.value.path == "renamedField"
    assert caught.value.detail == "unknown field"


# ---------------------------------------------------------------- to_json


def test_to_json_leaves_out_none_and_keeps_defaults() -> None:
    value = Sample(plain_name=3)

    assert serde.to_json(value) == {
        "plainName": 3,
        "renamed": "x",
        "ratio": 0.0,
        "items": [],
        "labels": {},
        "judge": "threshold",
    }


def test_to_json_writes_tuples_as_lists_enums_as_values_and_nested_dataclasses() -> None:
    value = Sample(
        plain_name=1,
        maybe_text="t",
        items=(1, 2, 3),
        labels={"a": "b"},
        free={"nested": {"deep": [1, None]}},
        inner=Inner(flag_value=True),
    )

    out = serde.to_json(value)

    assert out["items"] == [1, 2, 3]
    assert out["judge"] == "threshold"
    assert type(out["judge"]) is str
    assert out["labels"] == {"a": "b"}
    assert out["free"] == {"nested": {"deep": [1, None]}}
    assert out["inner"] == {"flagValue": True}
    assert out["maybeText"] == "t"


# ---------------------------------------------------------------- from_json


def test_from_json_reads_lists_as_tuples_and_nested_dataclasses() -> None:
    read = serde.from_json(
        Sample,
        {
            "plainName": 1,
            "items": [4, 5],
            "labels": {"team": "fraud"},
            "free": {"anything": [1, "two", {"three": 3}]},
            "judge": "threshold",
            "inner": {"flagValue": True},
        },
    )

    assert read == Sample(
        plain_name=1,
        items=(4, 5),
        labels={"team": "fraud"},
        free={"anything": [1, "two", {"three": 3}]},
        judge=api.Judge.THRESHOLD,
        inner=Inner(flag_value=True),
    )
    assert isinstance(read.items, tuple)
    assert read.judge is api.Judge.THRESHOLD


def test_explicit_null_for_an_optional_field_reads_as_none() -> None:
    read = serde.from_json(Sample, {"plainName": 1, "maybeText": None, "inner": None})

    assert read.maybe_text is None
    assert read.inner is None


def test_defaults_fill_absent_fields() -> None:
    assert serde.from_json(Sample, {"plainName": 7}) == Sample(plain_name=7)


@pytest.mark.parametrize(
    ("cls", "data", "ok"),
    [
        (api.SecretKeyRef, {"name": "s"}, api.SecretKeyRef(name="s")),
        (api.ThresholdRange, {"max": 1}, api.ThresholdRange(max=1.0)),
        (api.AnalysisStep, {"metrics": ["a", "b"]}, api.AnalysisStep(metrics=("a", "b"))),
    ],
)
def test_from_json_reads_small_api_types(cls: type, data: dict[str, Any], ok: Any) -> None:
    assert serde.from_json(cls, data) == ok


def test_int_given_where_float_is_expected_becomes_a_float() -> None:
    read = serde.from_json(Sample, {"plainName": 1, "ratio": 2})

    assert read.ratio == 2.0
    assert type(read.ratio) is float


def test_int_field_accepts_a_whole_float() -> None:
    read = serde.from_json(Sample, {"plainName": 5.0})

    assert read.plain_name == 5
    assert type(read.plain_name) is int


@pytest.mark.parametrize(
    ("data", "path", "detail"),
    [
        ({"plainName": 5.5}, "plainName", "must be of type int, not float"),
        ({"plainName": True}, "plainName", "must be of type int, not bool"),
        ({"plainName": False}, "plainName", "must be of type int, not bool"),
        ({"plainName": "5"}, "plainName", "must be of type int, not str"),
        ({"plainName": 1, "ratio": True}, "ratio", "must be of type float, not bool"),
        ({"plainName": 1, "ratio": "0.5"}, "ratio", "must be of type float, not str"),
        ({"plainName": 1, "maybeText": 3}, "maybeText", "must be of type str, not int"),
        (
            {"plainName": 1, "inner": {"flagValue": 1}},
            "inner.flagValue",
            "must be of type bool, not int",
        ),
        (
            {"plainName": 1, "inner": {"flagValue": "true"}},
            "inner.flagValue",
            "must be of type bool, not str",
        ),
        ({"plainName": 1, "items": "1,2"}, "items", "must be a list, not str"),
        ({"plainName": 1, "items": [1, "2"]}, "items[1]", "must be of type int, not str"),
        ({"plainName": 1, "labels": ["a"]}, "labels", "must be an object, not list"),
        ({"plainName": 1, "labels": {"a": 1}}, "labels.a", "must be of type str, not int"),
        ({"plainName": 1, "inner": []}, "inner", "must be an object, not list"),
        ({"plainName": None}, "plainName", "a value is required"),
        ({}, "plainName", "a value is required"),
    ],
)
def test_wrong_values_name_their_path(data: dict[str, Any], path: str, detail: str) -> None:
    with pytest.raises(SpecError) as caught:
        serde.from_json(Sample, data)

    assert caught.value.path == path
    assert caught.value.detail == detail
    assert str(caught.value) == f"{path}: {detail}"


def test_a_root_that_is_not_an_object_is_named_root() -> None:
    with pytest.raises(SpecError) as caught:
        serde.from_json(Sample, [1])

    assert caught.value.path == ""
    assert str(caught.value) == "<root>: must be an object, not list"


@pytest.mark.parametrize("bad", ["median", "Threshold", 5])
def test_bad_enum_value_lists_the_allowed_values(bad: Any) -> None:
    with pytest.raises(SpecError) as caught:
        serde.from_json(Sample, {"plainName": 1, "judge": bad})

    assert caught.value.path == "judge"
    assert caught.value.detail == (
        f"unsupported value {bad!r}; one of 'threshold', 'sequential', 'drift'"
    )


def test_bad_router_lists_every_router() -> None:
    with pytest.raises(SpecError) as caught:
        serde.from_json(api.TargetSpec, {"inferenceService": "f", "router": "istio"}, "spec.target")

    assert str(caught.value) == (
        "spec.target.router: unsupported value 'istio'; one of 'kserve-serverless', 'kserve-raw'"
    )


# ---------------------------------------------------------------- paths in a spec


def spec_body() -> dict[str, Any]:
    return {
        "model": {"uri": "models:/fraud/2"},
        "target": {"inferenceService": "fraud"},
        "strategy": {"steps": [{"setWeight": 20}, {"setWeight": 50}]},
    }


def test_unknown_field_in_a_step_names_its_exact_path() -> None:
    body = spec_body()
    body["strategy"]["steps"][1] = {"setWieght": 50}

    with pytest.raises(SpecError) as caught:
        api.read_spec(body)

    assert caught.value.path == "spec.strategy.steps[1].setWieght"
    assert str(caught.value) == "spec.strategy.steps[1].setWieght: unknown field"


def test_the_first_unknown_field_in_sorted_order_is_named() -> None:
    body = spec_body()
    body["target"]["zeta"] = 1
    body["target"]["alpha"] = 1

    with pytest.raises(SpecError) as caught:
        api.read_spec(body)

    assert caught.value.path == "spec.target.alpha"


def test_unknown_field_at_the_root_has_no_leading_dot() -> None:
    with pytest.raises(SpecError) as caught:
        serde.from_json(api.SecretKeyRef, {"name": "s", "nmae": "t"})

    assert caught.value.path == "nmae"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b.pop("target"), "spec.target"),
        (lambda b: b["target"].pop("inferenceService"), "spec.target.inferenceService"),
        (
            lambda b: b["strategy"].update(analysis={"metrics": [{"query": "q"}]}),
            "spec.strategy.analysis.metrics[0].name",
        ),
        (
            lambda b: b["model"].update(git={"repository": "r"}),
            "spec.model.git.path",
        ),
    ],
)
def test_missing_required_field_names_its_path(change: Any, path: str) -> None:
    body = spec_body()
    change(body)

    with pytest.raises(SpecError) as caught:
        api.read_spec(body)

    assert caught.value.path == path
    assert caught.value.detail == "a value is required"


def test_read_status_of_nothing_is_the_default_status() -> None:
    assert api.read_status(None) == api.ModelRolloutStatus()


# ---------------------------------------------------------------- round trips


def full_spec() -> api.ModelRolloutSpec:
    return api.ModelRolloutSpec(
        model=api.ModelSource(
            git=api.GitSource(
                repository="https://git.example/models.git",
                path="fraud/model.yaml",
                ref="release",
                interval="2m",
                secret_ref=api.SecretKeyRef(name="git-creds", key="token"),
                verify=api.SignatureVerification(
                    allowed_signers_secret_ref=api.SecretKeyRef(name="signers")
                ),
            )
        ),
        target=api.TargetSpec(
            inference_service="fraud",
            router=api.Router.KSERVE_RAW,
            predictor={"minReplicas": 2, "resources": {"limits": {"cpu": "1"}}},
        ),
        strategy=api.Strategy(
            steps=(
                api.Step(set_weight=10),
                api.Step(pause=api.PauseStep(duration="5m")),
                api.Step(analysis=api.AnalysisStep(metrics=("success-rate",), count=3)),
                api.Step(pause=api.PauseStep()),
            ),
            analysis=api.AnalysisSpec(
                interval="30s",
                metrics=(
                    api.MetricSpec(
                        name="success-rate",
                        template_ref=api.LocalObjectRef(name="success-rate"),
                        args={"service": "fraud"},
                        threshold_range=api.ThresholdRange(min=0.99),
                        interval="1m",
                        background=False,
                        failure_limit=2,
                        inconclusive_limit=1,
                        consecutive_error_limit=3,
                    ),
                    api.MetricSpec(
                        name="latency",
                        query="histogram_quantile(0.99, rate(x[1m]))",
                        threshold_range=api.ThresholdRange(min=0.0, max=0.5),
                    ),
                ),
            ),
        ),
        registry=api.RegistrySpec(
            tracking_uri="http://mlflow:5000",
            secret_ref=api.SecretKeyRef(name="mlflow"),
            gates=api.RegistryGates(
                required_tags={"validated": "true"},
                holdout=(
                    api.HoldoutGate(
                        metric="auc",
                        direction=api.Direction.HIGHER_IS_BETTER,
                        max_regression=0.01,
                    ),
                ),
                schema_compatibility=True,
            ),
            write_back=api.WriteBack(enabled=False, alias="champion", tag_prefix="mr"),
        ),
        paused=True,
        progress_deadline_seconds=900,
        history_limit=5,
    )


def full_status() -> api.ModelRolloutStatus:
    stable = api.ModelVersionRef(
        uri="models:/fraud/1",
        storage_uri="s3://models/fraud/1",
        name="fraud",
        version="1",
        run_id="run1",
        git_commit="abc123",
    )
    canary = api.ModelVersionRef(uri="models:/fraud/2", storage_uri="s3://models/fraud/2")
    return api.ModelRolloutStatus(
        phase=api.Phase.PROGRESSING,
        message="step 2: waiting for analysis",
        observed_generation=4,
        stable=stable,
        canary=canary,
        current_step_index=2,
        canary_weight=10,
        canary_started_at="2026-11-27T12:00:00Z",
        step_started_at="2026-11-27T12:05:00.250000Z",
        progress_at="2026-11-27T12:05:00Z",
        rollback=api.RollbackStatus(
            outcome=api.Outcome.ROLLED_BACK, reason=api.Reason.ANALYSIS_FAILED, message="m"
        ),
        analysis=api.AnalysisStatus(
            phase=api.AnalysisPhase.INCONCLUSIVE,
            message="metric 'latency' was inconclusive",
            metrics=(
                api.MetricStatus(
                    name="latency",
                    verdict=api.Verdict.INCONCLUSIVE,
                    value=None,
                    message="no data",
                    measured_at="2026-11-27T12:05:30Z",
                    count=4,
                    successful=1,
                    failed=1,
                    inconclusive=1,
                    error=1,
                    consecutive_errors=0,
                    step_passes=1,
                    evidence={"query": "q"},
                ),
                api.MetricStatus(name="success-rate", verdict=api.Verdict.PASS, value=0.995),
            ),
        ),
        conditions=(
            api.Condition(
                type=api.ConditionType.READY,
                status="False",
                reason=api.Reason.WAITING_FOR_ANALYSIS,
                message="waiting",
                last_transition_time="2026-11-27T12:00:00Z",
                observed_generation=4,
            ),
            api.Condition(
                type=api.ConditionType.HEALTHY, status="True", reason=api.Reason.ANALYSIS_PASSING
            ),
        ),
        history=(
            api.HistoryEntry(
                model=stable,
                outcome=api.Outcome.PROMOTED,
                reason=api.Reason.ROLLOUT_COMPLETED,
                message="done",
                started_at="2026-11-26T10:00:00Z",
                finished_at="2026-11-26T10:30:00Z",
            ),
        ),
        failed_versions=("fraud/0",),
        last_action="promote:1",
    )


def test_full_spec_round_trips() -> None:
    original = full_spec()

    data = serde.to_json(original)

    assert api.read_spec(data) == original
    assert data["model"]["git"]["verify"] == {"allowedSignersSecretRef": {"name": "signers"}}
    assert data["target"]["router"] == "kserve-raw"
    assert data["strategy"]["steps"][3] == {"pause": {}}
    assert data["progressDeadlineSeconds"] == 900
    assert data["registry"]["gates"]["holdout"] == [
        {"metric": "auc", "direction": "higherIsBetter", "maxRegression": 0.01}
    ]


def test_full_status_round_trips() -> None:
    original = full_status()

    data = serde.to_json(original)

    assert api.read_status(data) == original
    assert data["analysis"]["metrics"][0]["consecutiveErrors"] == 0
    assert "value" not in data["analysis"]["metrics"][0]
    assert data["conditions"][0]["lastTransitionTime"] == "2026-11-27T12:00:00Z"
    assert data["conditions"][1] == {
        "type": "Healthy",
        "status": "True",
        "reason": "AnalysisPassing",
        "message": "",
    }
    assert data["failedVersions"] == ["fraud/0"]
