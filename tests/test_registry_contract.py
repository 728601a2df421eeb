"""The registry contract: MlflowRegistry on a real MLflow server and MemoryRegistry on the same
facts answer alike, so the fake cannot drift from MLflow.

One suite, parametrized by ``backend``. ``mlflow``: ``mlflow server`` on 127.0.0.1 (SQLite, a
local artifact root, started once per session) holding real scikit-learn models fitted on
``load_diabetes``, each logged with a signature, its dataset inputs, holdout metrics and the
``mlflow.source.git.commit`` run tag; ``memory``: a MemoryStore set up with the same facts.

Covers:
- resolve: a version, an alias, a deprecated stage (with its warning, once); unknown model,
  version, alias and stage; URIs that are not registry model URIs; an unreachable registry;
- storage: MLflow 3's download URI (not ``ModelVersion.source``) through the storage map,
  first match winning; refusal with reason StorageUnsupported of what KServe cannot load;
  a version stored at an ``s3://`` URI needing no map;
- provenance: the training commit and the dataset inputs; ``describe``: tags, stage, schema;
- gates: required tags, holdout (both directions, allowed regression, missing metric) and
  input schema, each passing and failing, and with no stable version;
- write-back: promotion (and a first model) moves the alias and writes the tags, and a
  second run changes nothing (no write request at all); a rollback records its reason and
  moves no alias; a later promotion clears that reason; a version that is gone, or a
  disabled write-back, writes nothing;
- the cache: an alias move is seen once the TTL has passed, not before, and at once after
  this registry's own write-back.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlflow_server import MlflowServer, free_port, tracking
from modelrollout.api import (
    DatasetRef,
    Direction,
    HoldoutGate,
    ModelVersionRef,
    Outcome,
    Reason,
    RegistryGates,
)
from modelrollout.api import WriteBack as WriteBackSpec
from modelrollout.decision import GateResult, WriteBack
from modelrollout.errors import RegistryError
from modelrollout.registry.core import (
    SOURCE_COMMIT_TAG,
    BackedRegistry,
    EmptyStageError,
    InvalidModelUriError,
    RegistryUnreachableError,
    StorageUnsupportedError,
    UnknownModelError,
    UnknownVersionError,
    UnsetAliasError,
)
from modelrollout.registry.memory import MemoryRegistry, MemoryStore
from modelrollout.registry.mlflow import MlflowRegistry

MODEL = "contract-diabetes"
ARTIFACTS = "mlflow-artifacts:/"
BUCKET = "s3://mlflow-bucket/"
STORAGE_MAP = ((ARTIFACTS, BUCKET),)
EXTERNAL = "s3://external-models/diabetes/5"
DIABETES_SOURCE = "https://www4.stat.ncsu.edu/~boos/var.select/diabetes.html"
ROLLOUT = "fraud-team/diabetes"
AT = "2026-11-27T03:12:38Z"


# ---------------------------------------------------------------- the facts


@dataclass(frozen=True)
class Trained:
    """One fitted model and everything logged with it."""

    label: str
    estimator: Any
    signature: Any
    input_schema: list[dict[str, Any]]
    rmse: float
    r2: float
    commit: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Facts:
    versions: tuple[Trained, ...]
    datasets: tuple[Any, ...]  # mlflow.data PandasDataset: (training, evaluation)

    def __getitem__(self, label: str) -> Trained:
        return next(t for t in self.versions if t.label == label)

    @property
    def dataset_refs(self) -> tuple[DatasetRef, ...]:
        return tuple(DatasetRef(d.name, d.digest, DIABETES_SOURCE) for d in self.datasets)


@pytest.fixture(scope="session")
def facts() -> Facts:
    """v1 (stable), v2 better, v3 worse and unapproved, v4 needs an input v1's callers lack."""
    import mlflow.data
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.metrics import r2_score, root_mean_squared_error
    from sklearn.model_selection import train_test_split

    features, target = load_diabetes(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=0.25, random_state=7
    )
    narrow = [column for column in features.columns if column != "s6"]
    plan = (
        ("v1", LinearRegression(), narrow, "approved"),
        ("v2", Ridge(alpha=0.1), narrow, "approved"),
        ("v3", Ridge(alpha=10.0), narrow, "pending"),
        ("v4", Ridge(alpha=0.1), list(features.columns), "approved"),
    )
    versions = []
    for number, (label, estimator, columns, status) in enumerate(plan, start=1):
        estimator.fit(x_train[columns], y_train)
        predicted = estimator.predict(x_test[columns])
        signature = infer_signature(x_train[columns], estimator.predict(x_train[columns]))
        versions.append(
            Trained(
                label=label,
                estimator=estimator,
                signature=signature,
                input_schema=signature.inputs.to_dict(),
                rmse=float(root_mean_squared_error(y_test, predicted)),
                r2=float(r2_score(y_test, predicted)),
                commit=f"{number}" * 40,
                tags={"validation_status": status, "team": "fraud"},
            )
        )
    result = Facts(
        tuple(versions),
        (
            mlflow.data.from_pandas(
                x_train.assign(target=y_train),
                source=DIABETES_SOURCE,
                name="diabetes-train",
                targets="target",
            ),
            mlflow.data.from_pandas(
                x_test.assign(target=y_test),
                source=DIABETES_SOURCE,
                name="diabetes-holdout",
                targets="target",
            ),
        ),
    )
    assert result["v2"].rmse < result["v1"].rmse < result["v3"].rmse
    assert result["v2"].r2 > result["v1"].r2 > result["v3"].r2
    return result


# ---------------------------------------------------------------- the backends


@dataclass
class Backend:
    """A registry backend with the facts loaded, and ways to look at it from outside."""

    name: str
    make: Callable[..., BackedRegistry]
    unreachable: Callable[[], BackedRegistry]
    versions: dict[str, str]  # label -> version number
    run_ids: dict[str, str]
    download_uris: dict[str, str]
    sources: dict[str, str]
    tags: Callable[[str], dict[str, str]]
    aliases: Callable[[], dict[str, str]]
    all_versions: Callable[[], list[str]]
    move_alias: Callable[[str, str], None]
    #: Writes the registry has taken so far (tags set or deleted, aliases set).
    writes: Callable[[], int]

    def registry(self, **options: Any) -> BackedRegistry:
        options.setdefault("cache_ttl_seconds", 0.0)
        options.setdefault("storage_map", STORAGE_MAP)
        return self.make(**options)

    def ref(self, label: str) -> ModelVersionRef:
        version = self.versions[label]
        return ModelVersionRef(f"models:/{MODEL}/{version}", "s3://x", MODEL, version)


@dataclass(frozen=True)
class Registered:
    url: str
    log: Path
    versions: dict[str, str]
    run_ids: dict[str, str]


@pytest.fixture(scope="session")
def mlflow_facts(mlflow_server: MlflowServer, facts: Facts) -> Registered:
    """The facts logged to the server as a data scientist would, through MLflow itself."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient

    mlflow_server.wait_ready()
    client = MlflowClient(mlflow_server.url)
    versions: dict[str, str] = {}
    run_ids: dict[str, str] = {}
    # MLflow warns about its own deprecations (stages, pyfunc type hints) while logging;
    # this is set-up, not the code under test.
    with tracking(mlflow_server.url), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        experiment = client.create_experiment("contract")
        for trained in facts.versions:
            with mlflow.start_run(
                experiment_id=experiment, tags={SOURCE_COMMIT_TAG: trained.commit}
            ) as run:
                mlflow.log_input(facts.datasets[0], context="training")
                mlflow.log_input(facts.datasets[1], context="evaluation")
                mlflow.log_metrics({"rmse": trained.rmse, "r2": trained.r2})
                info = mlflow.sklearn.log_model(
                    trained.estimator,
                    name="model",
                    signature=trained.signature,
                    pip_requirements=["scikit-learn"],
                    registered_model_name=MODEL,
                )
            version = str(info.registered_model_version)
            for key, value in trained.tags.items():
                client.set_model_version_tag(MODEL, version, key, value)
            versions[trained.label] = version
            run_ids[trained.label] = run.info.run_id
        versions["v5"] = str(client.create_model_version(MODEL, EXTERNAL).version)
        client.set_registered_model_alias(MODEL, "champion", versions["v1"])
        client.set_registered_model_alias(MODEL, "challenger", versions["v2"])
        client.transition_model_version_stage(MODEL, versions["v2"], "Staging")
    return Registered(mlflow_server.url, mlflow_server.log, versions, run_ids)


#: The write requests in the server's access log (uvicorn logs each before it answers).
MLFLOW_WRITES = re.compile(
    r'"(POST /api/2\.0/mlflow/(model-versions/set-tag|registered-models/alias)'
    r"|DELETE /api/2\.0/mlflow/model-versions/delete-tag) "
)


def _mlflow_backend(registered: Registered) -> Backend:
    from mlflow import MlflowClient

    client = MlflowClient(registered.url)
    versions = registered.versions
    download_uris = {
        label: client.get_model_version_download_uri(MODEL, v) for label, v in versions.items()
    }
    sources = {
        label: client.get_model_version(MODEL, v).source or "" for label, v in versions.items()
    }
    return Backend(
        name="mlflow",
        make=lambda **options: MlflowRegistry(registered.url, **options),
        unreachable=lambda: MlflowRegistry(f"http://127.0.0.1:{free_port()}", STORAGE_MAP),
        versions=versions,
        run_ids=registered.run_ids,
        download_uris=download_uris,
        sources=sources,
        tags=lambda version: dict(client.get_model_version(MODEL, version).tags),
        aliases=lambda: dict(client.get_registered_model(MODEL).aliases),
        all_versions=lambda: sorted(
            v.version for v in client.search_model_versions(f"name = '{MODEL}'")
        ),
        move_alias=lambda alias, version: client.set_registered_model_alias(MODEL, alias, version),
        writes=lambda: len(MLFLOW_WRITES.findall(registered.log.read_text(errors="replace"))),
    )


def _memory_backend(facts: Facts) -> Backend:
    store = MemoryStore()
    versions: dict[str, str] = {}
    run_ids: dict[str, str] = {}
    download_uris: dict[str, str] = {}
    sources: dict[str, str] = {}
    for number, trained in enumerate(facts.versions, start=1):
        run_id = store.log_run(
            metrics={"rmse": trained.rmse, "r2": trained.r2},
            tags={SOURCE_COMMIT_TAG: trained.commit},
            datasets=facts.dataset_refs,
        )
        model_id = f"m-{number:032x}"
        download_uris[trained.label] = f"{ARTIFACTS}1/models/{model_id}/artifacts"
        sources[trained.label] = f"models:/{model_id}"
        versions[trained.label] = store.create_version(
            MODEL,
            download_uris[trained.label],
            run_id=run_id,
            source=sources[trained.label],
            tags=trained.tags,
            input_schema=trained.input_schema,
        )
        run_ids[trained.label] = run_id
    versions["v5"] = store.create_version(MODEL, EXTERNAL, source=EXTERNAL)
    download_uris["v5"] = sources["v5"] = EXTERNAL
    store.set_alias(MODEL, "champion", versions["v1"])
    store.set_alias(MODEL, "challenger", versions["v2"])
    store.transition_stage(MODEL, versions["v2"], "Staging")

    def unreachable() -> BackedRegistry:
        down = MemoryStore()
        down.set_reachable(False)
        return MemoryRegistry(down, STORAGE_MAP)

    return Backend(
        name="memory",
        make=lambda **options: MemoryRegistry(store, **options),
        unreachable=unreachable,
        versions=versions,
        run_ids=run_ids,
        download_uris=download_uris,
        sources=sources,
        tags=lambda version: store.version_tags(MODEL, version),
        aliases=lambda: store.aliases(MODEL),
        all_versions=lambda: sorted(store.versions(MODEL)),
        move_alias=lambda alias, version: store.set_alias(MODEL, alias, version),
        writes=lambda: store.writes,
    )


@pytest.fixture(params=["mlflow", "memory"])
def backend(request: pytest.FixtureRequest, facts: Facts) -> Backend:
    if request.param == "mlflow":
        registered: Registered = request.getfixturevalue("mlflow_facts")
        return _mlflow_backend(registered)
    return _memory_backend(facts)


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


def _uri(backend: Backend, label: str) -> str:
    return f"models:/{MODEL}/{backend.versions[label]}"


# ---------------------------------------------------------------- resolve


@pytest.mark.asyncio
async def test_a_version_resolves_to_its_identity_and_storage(backend: Backend) -> None:
    ref = await backend.registry().resolve(_uri(backend, "v1"))

    assert (ref.name, ref.version, ref.run_id) == (
        MODEL,
        backend.versions["v1"],
        backend.run_ids["v1"],
    )
    assert ref.uri == _uri(backend, "v1")
    assert ref.storage_uri == BUCKET + backend.download_uris["v1"].removeprefix(ARTIFACTS)


@pytest.mark.asyncio
async def test_storage_comes_from_the_download_uri_not_the_version_source(
    backend: Backend,
) -> None:
    """MLflow 3 sets ModelVersion.source to models:/m-…, which no storage initializer loads."""
    assert backend.sources["v1"].startswith("models:/m-")
    assert backend.download_uris["v1"].startswith(ARTIFACTS)

    ref = await backend.registry().resolve(_uri(backend, "v1"))

    assert ref.storage_uri.startswith(BUCKET)
    assert backend.sources["v1"].removeprefix("models:/") not in ref.storage_uri.split("/")[-1]


@pytest.mark.asyncio
async def test_an_alias_resolves_to_the_version_it_points_to(backend: Backend) -> None:
    registry = backend.registry()

    champion = await registry.resolve(f"models:/{MODEL}@champion")
    challenger = await registry.resolve(f"models:/{MODEL}@challenger")

    assert champion.version == backend.versions["v1"]
    assert champion.uri == f"models:/{MODEL}@champion"
    assert challenger.version == backend.versions["v2"]
    assert challenger.run_id == backend.run_ids["v2"]


@pytest.mark.asyncio
async def test_a_stage_resolves_with_a_deprecation_warning_once(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    registry = backend.registry()
    caplog.set_level(logging.WARNING, logger="modelrollout.registry")

    first = await registry.resolve(f"models:/{MODEL}/Staging")
    again = await registry.resolve(f"models:/{MODEL}/Staging")
    lower = await registry.resolve(f"models:/{MODEL}/staging")

    assert first.version == again.version == lower.version == backend.versions["v2"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2  # once per URI as written, not once per pass
    assert "deprecated" in warned[0]
    assert f"models:/{MODEL}@champion" in warned[0]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("uri", "error", "words"),
    [
        ("models:/no-such-model/1", UnknownModelError, "'no-such-model' is not registered"),
        (f"models:/{MODEL}/99", UnknownVersionError, "has no version 99"),
        (f"models:/{MODEL}@unset", UnsetAliasError, "alias 'unset' of model"),
        ("models:/no-such-model@champion", UnknownModelError, "is not registered"),
        (f"models:/{MODEL}/Production", EmptyStageError, "in stage 'Production'"),
        ("models:/no-such-model/Staging", UnknownModelError, "is not registered"),
    ],
)
async def test_what_the_registry_does_not_hold_is_a_clear_error(
    backend: Backend, uri: str, error: type[RegistryError], words: str
) -> None:
    with pytest.raises(error) as raised:
        await backend.registry().resolve(uri)

    assert words in str(raised.value)
    assert raised.value.reason == Reason.SOURCE_ERROR


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "uri",
    [
        f"models:/{MODEL}/latest",
        f"models:/{MODEL}",
        f"models:/{MODEL}/1/extra",
        f"models:/{MODEL}/Shipping",
        "runs:/0123/model",
        "s3://bucket/model",
    ],
)
async def test_what_is_not_a_registry_model_uri_is_refused(backend: Backend, uri: str) -> None:
    with pytest.raises(InvalidModelUriError, match="models:/<name>/<version>"):
        await backend.registry().resolve(uri)


@pytest.mark.asyncio
async def test_an_unreachable_registry_is_a_clear_error(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    with pytest.raises(RegistryUnreachableError, match="cannot reach") as raised:
        await backend.unreachable().resolve(f"models:/{MODEL}/1")

    assert raised.value.reason == Reason.SOURCE_ERROR


# ---------------------------------------------------------------- storage


@pytest.mark.asyncio
async def test_with_no_storage_map_an_artifact_proxy_uri_is_refused(backend: Backend) -> None:
    with pytest.raises(StorageUnsupportedError) as raised:
        await backend.registry(storage_map=()).resolve(_uri(backend, "v1"))

    assert raised.value.reason == Reason.STORAGE_UNSUPPORTED
    message = str(raised.value)
    assert backend.download_uris["v1"] in message
    assert "KServe cannot load" in message
    assert "storage map" in message


@pytest.mark.asyncio
async def test_a_map_to_a_local_path_is_refused(backend: Backend) -> None:
    registry = backend.registry(storage_map=((ARTIFACTS, "file:///srv/mlruns/"),))

    with pytest.raises(StorageUnsupportedError, match="mapped to file:///srv/mlruns/"):
        await registry.resolve(_uri(backend, "v1"))


@pytest.mark.asyncio
async def test_the_first_matching_prefix_wins(backend: Backend) -> None:
    registry = backend.registry(
        storage_map=(
            ("gs://elsewhere/", "s3://never/"),
            (ARTIFACTS, "pvc://mlruns/"),
            ("mlflow-artifacts:", "s3://second/"),
        )
    )

    ref = await registry.resolve(_uri(backend, "v2"))

    assert ref.storage_uri == "pvc://mlruns/" + backend.download_uris["v2"].removeprefix(ARTIFACTS)


@pytest.mark.asyncio
async def test_a_version_stored_where_kserve_loads_needs_no_map(backend: Backend) -> None:
    ref = await backend.registry(storage_map=()).resolve(_uri(backend, "v5"))

    assert ref.storage_uri == EXTERNAL
    assert (ref.run_id, ref.source_commit, ref.datasets) == (None, None, ())


# ---------------------------------------------------------------- provenance


@pytest.mark.asyncio
async def test_the_resolved_identity_carries_its_provenance(backend: Backend, facts: Facts) -> None:
    ref = await backend.registry().resolve(f"models:/{MODEL}@challenger")

    assert ref.source_commit == facts["v2"].commit
    assert ref.datasets == tuple(sorted(facts.dataset_refs, key=lambda d: d.name))
    assert all(d.digest for d in ref.datasets)


@pytest.mark.asyncio
async def test_describe_gives_tags_stage_and_input_schema(backend: Backend, facts: Facts) -> None:
    details = await backend.registry().describe(f"models:/{MODEL}/Staging")

    assert details.ref.version == backend.versions["v2"]
    assert details.stage == "Staging"
    assert details.tags["validation_status"] == "approved"
    assert details.input_schema is not None
    names = [column.name for column in details.input_schema.columns]
    assert names == [spec["name"] for spec in facts["v2"].input_schema]
    assert "s6" not in names
    assert {column.type for column in details.input_schema.columns} == {"double"}


# ---------------------------------------------------------------- gates


async def _gates(
    backend: Backend, candidate: str, stable: str | None, gates: RegistryGates
) -> tuple[GateResult, ...]:
    return await backend.registry().check_gates(
        backend.ref(candidate), backend.ref(stable) if stable else None, gates
    )


@pytest.mark.asyncio
async def test_required_tags_pass_when_every_one_matches(backend: Backend) -> None:
    gates = RegistryGates(required_tags={"validation_status": "approved", "team": "fraud"})

    results = await _gates(backend, "v2", "v1", gates)

    assert [(r.name, r.passed) for r in results] == [
        ("tag team", True),
        ("tag validation_status", True),
    ]


@pytest.mark.asyncio
async def test_a_required_tag_with_another_value_or_none_fails(backend: Backend) -> None:
    gates = RegistryGates(required_tags={"validation_status": "approved", "owner": "alice"})

    owner, status = await _gates(backend, "v3", "v1", gates)

    assert not status.passed
    assert status.message == "tag validation_status is 'pending', needs 'approved'"
    assert not owner.passed
    assert owner.message == "tag owner is not set, needs 'alice'"


@pytest.mark.asyncio
async def test_holdout_passes_when_the_candidate_is_no_worse(
    backend: Backend, facts: Facts
) -> None:
    gates = RegistryGates(
        holdout=(
            HoldoutGate("rmse"),
            HoldoutGate("r2", direction=Direction.HIGHER_IS_BETTER),
        )
    )

    rmse, r2 = await _gates(backend, "v2", "v1", gates)

    assert (rmse.name, rmse.passed, r2.name, r2.passed) == (
        "holdout rmse",
        True,
        "holdout r2",
        True,
    )
    assert f"{facts['v1'].rmse:.6g}" in rmse.message


@pytest.mark.asyncio
async def test_holdout_fails_when_the_candidate_is_worse_beyond_the_allowance(
    backend: Backend, facts: Facts
) -> None:
    v1, v3 = facts["v1"], facts["v3"]
    gates = RegistryGates(
        holdout=(
            HoldoutGate("rmse", max_regression=0.01),
            HoldoutGate("r2", direction=Direction.HIGHER_IS_BETTER),
        )
    )

    rmse, r2 = await _gates(backend, "v3", "v1", gates)

    assert not rmse.passed
    assert rmse.message == (
        f"rmse {v3.rmse:.6g} is worse than the stable's {v1.rmse:.6g} by more than 0.01"
    )
    assert not r2.passed
    assert r2.message == f"r2 {v3.r2:.6g} is worse than the stable's {v1.r2:.6g}"


@pytest.mark.asyncio
async def test_holdout_allows_a_regression_within_max_regression(
    backend: Backend, facts: Facts
) -> None:
    allowance = facts["v3"].rmse - facts["v1"].rmse + 0.5
    gates = RegistryGates(holdout=(HoldoutGate("rmse", max_regression=allowance),))

    (rmse,) = await _gates(backend, "v3", "v1", gates)

    assert rmse.passed


@pytest.mark.asyncio
async def test_holdout_fails_when_the_candidate_run_lacks_the_metric(backend: Backend) -> None:
    (auc,) = await _gates(backend, "v2", "v1", RegistryGates(holdout=(HoldoutGate("auc"),)))
    (no_run,) = await _gates(backend, "v5", "v1", RegistryGates(holdout=(HoldoutGate("rmse"),)))

    assert not auc.passed
    assert "has no metric auc" in auc.message
    assert not no_run.passed
    assert "has no training run" in no_run.message


@pytest.mark.asyncio
async def test_with_no_stable_holdout_and_schema_pass_with_nothing_to_compare(
    backend: Backend,
) -> None:
    gates = RegistryGates(holdout=(HoldoutGate("rmse"),), schema_compatibility=True)

    rmse, schema = await _gates(backend, "v3", None, gates)

    assert rmse.passed
    assert schema.passed
    assert "nothing to compare with" in rmse.message
    assert "nothing to compare with" in schema.message


@pytest.mark.asyncio
async def test_schema_passes_when_the_candidate_accepts_the_stables_inputs(
    backend: Backend,
) -> None:
    (schema,) = await _gates(backend, "v2", "v1", RegistryGates(schema_compatibility=True))
    (narrower,) = await _gates(backend, "v1", "v4", RegistryGates(schema_compatibility=True))

    assert (schema.name, schema.passed) == ("input schema", True)
    assert narrower.passed  # v4's callers send s6 too; v1 ignores it


@pytest.mark.asyncio
async def test_schema_fails_when_the_candidate_needs_an_input_the_stable_lacks(
    backend: Backend,
) -> None:
    (schema,) = await _gates(backend, "v4", "v1", RegistryGates(schema_compatibility=True))

    assert not schema.passed
    assert schema.message == (
        "input 's6' (double) is required, and the stable's callers do not send it"
    )


@pytest.mark.asyncio
async def test_schema_fails_when_the_candidate_schema_cannot_be_read(backend: Backend) -> None:
    (schema,) = await _gates(backend, "v5", "v1", RegistryGates(schema_compatibility=True))

    assert not schema.passed
    assert "cannot read the input schema" in schema.message
    assert EXTERNAL in schema.message


@pytest.mark.asyncio
async def test_every_configured_gate_gives_one_result_in_order(backend: Backend) -> None:
    gates = RegistryGates(
        required_tags={"validation_status": "approved"},
        holdout=(HoldoutGate("rmse"), HoldoutGate("r2", direction=Direction.HIGHER_IS_BETTER)),
        schema_compatibility=True,
    )

    results = await _gates(backend, "v2", "v1", gates)
    nothing = await _gates(backend, "v2", "v1", RegistryGates())

    assert [r.name for r in results] == [
        "tag validation_status",
        "holdout rmse",
        "holdout r2",
        "input schema",
    ]
    assert all(r.passed for r in results)
    assert nothing == ()


# ---------------------------------------------------------------- write-back


def _outcome(
    backend: Backend, label: str, outcome: Outcome, reason: Reason, message: str = ""
) -> WriteBack:
    model = ModelVersionRef(
        _uri(backend, label), "s3://x", MODEL, backend.versions[label], git_commit="c0ffee"
    )
    return WriteBack(model, outcome, reason, message, at=AT)


@pytest.mark.asyncio
async def test_promotion_moves_the_alias_and_tags_and_a_repeat_changes_nothing(
    backend: Backend,
) -> None:
    registry = backend.registry()
    spec = WriteBackSpec(alias="wb-promoted", tag_prefix="wb-promote")
    promoted = _outcome(backend, "v2", Outcome.PROMOTED, Reason.ROLLOUT_PROMOTED)
    versions_before = backend.all_versions()

    writes_before = backend.writes()
    await registry.write_back(promoted, spec, ROLLOUT)
    tags, aliases, writes = (
        backend.tags(backend.versions["v2"]),
        backend.aliases(),
        backend.writes(),
    )
    await registry.write_back(promoted, spec, ROLLOUT)

    assert aliases["wb-promoted"] == backend.versions["v2"]
    assert {k: v for k, v in tags.items() if k.startswith("wb-promote.")} == {
        "wb-promote.rollout": ROLLOUT,
        "wb-promote.commit": "c0ffee",
        "wb-promote.time": AT,
        "wb-promote.verdict": "Promoted",
    }
    assert writes - writes_before == 5  # four tags and the alias
    assert backend.tags(backend.versions["v2"]) == tags
    assert backend.aliases() == aliases
    assert backend.all_versions() == versions_before
    assert backend.writes() == writes


@pytest.mark.asyncio
async def test_a_first_model_moves_the_alias_as_a_promotion_does(backend: Backend) -> None:
    spec = WriteBackSpec(alias="wb-initialized", tag_prefix="wb-initialized")

    await backend.registry().write_back(
        _outcome(backend, "v1", Outcome.INITIALIZED, Reason.INITIALIZED), spec, ROLLOUT
    )

    assert backend.aliases()["wb-initialized"] == backend.versions["v1"]
    assert backend.tags(backend.versions["v1"])["wb-initialized.verdict"] == "Initialized"


@pytest.mark.asyncio
async def test_rollback_records_the_reason_and_moves_no_alias(backend: Backend) -> None:
    registry = backend.registry()
    spec = WriteBackSpec(alias="wb-rollback", tag_prefix="wb-rollback")
    rolled_back = _outcome(
        backend, "v3", Outcome.ROLLED_BACK, Reason.ANALYSIS_FAILED, "success-rate 0.91 < 0.99"
    )

    await registry.write_back(rolled_back, spec, ROLLOUT)
    await registry.write_back(rolled_back, spec, ROLLOUT)

    tags = backend.tags(backend.versions["v3"])
    assert tags["wb-rollback.rolled_back"] == "AnalysisFailed: success-rate 0.91 < 0.99"
    assert tags["wb-rollback.verdict"] == "RolledBack"
    assert tags["wb-rollback.time"] == AT
    assert "wb-rollback" not in backend.aliases()


@pytest.mark.asyncio
async def test_a_promotion_after_a_rollback_clears_the_old_reason(backend: Backend) -> None:
    registry = backend.registry()
    spec = WriteBackSpec(tag_prefix="wb-retry")

    await registry.write_back(
        _outcome(backend, "v4", Outcome.ABORTED, Reason.ROLLOUT_ABORTED, "aborted by request"),
        spec,
        ROLLOUT,
    )
    aborted = backend.tags(backend.versions["v4"])
    await registry.write_back(
        _outcome(backend, "v4", Outcome.PROMOTED, Reason.ROLLOUT_PROMOTED), spec, ROLLOUT
    )

    assert aborted["wb-retry.rolled_back"] == "RolloutAborted: aborted by request"
    tags = backend.tags(backend.versions["v4"])
    assert "wb-retry.rolled_back" not in tags
    assert tags["wb-retry.verdict"] == "Promoted"


@pytest.mark.asyncio
async def test_a_write_back_for_a_version_that_is_gone_is_skipped(backend: Backend) -> None:
    gone = ModelVersionRef(f"models:/{MODEL}/999", "s3://x", MODEL, "999")
    versions_before = backend.all_versions()

    await backend.registry().write_back(
        WriteBack(gone, Outcome.PROMOTED, Reason.ROLLOUT_PROMOTED, at=AT),
        WriteBackSpec(alias="wb-gone"),
        ROLLOUT,
    )

    assert "wb-gone" not in backend.aliases()
    assert backend.all_versions() == versions_before


@pytest.mark.asyncio
async def test_a_disabled_write_back_writes_nothing(backend: Backend) -> None:
    spec = WriteBackSpec(enabled=False, alias="wb-disabled", tag_prefix="wb-disabled")

    await backend.registry().write_back(
        _outcome(backend, "v1", Outcome.PROMOTED, Reason.ROLLOUT_PROMOTED), spec, ROLLOUT
    )

    assert "wb-disabled" not in backend.aliases()
    assert not any(k.startswith("wb-disabled.") for k in backend.tags(backend.versions["v1"]))


# ---------------------------------------------------------------- the cache


@pytest.mark.asyncio
async def test_an_alias_move_is_seen_once_the_ttl_has_passed(backend: Backend) -> None:
    clock = Clock()
    registry = backend.registry(cache_ttl_seconds=5.0, clock=clock)
    backend.move_alias("cache-moving", backend.versions["v1"])
    first = await registry.resolve(f"models:/{MODEL}@cache-moving")

    backend.move_alias("cache-moving", backend.versions["v2"])
    clock.advance(4.9)
    within_ttl = await registry.resolve(f"models:/{MODEL}@cache-moving")
    clock.advance(0.2)
    after_ttl = await registry.resolve(f"models:/{MODEL}@cache-moving")

    assert first.version == within_ttl.version == backend.versions["v1"]
    assert after_ttl.version == backend.versions["v2"]


@pytest.mark.asyncio
async def test_an_own_write_back_is_seen_at_once(backend: Backend) -> None:
    registry = backend.registry(cache_ttl_seconds=60.0, clock=Clock())
    backend.move_alias("cache-written", backend.versions["v1"])
    before = await registry.resolve(f"models:/{MODEL}@cache-written")

    await registry.write_back(
        _outcome(backend, "v2", Outcome.PROMOTED, Reason.ROLLOUT_PROMOTED),
        WriteBackSpec(alias="cache-written", tag_prefix="cache-written"),
        ROLLOUT,
    )
    after = await registry.resolve(f"models:/{MODEL}@cache-written")

    assert (before.version, after.version) == (backend.versions["v1"], backend.versions["v2"])
