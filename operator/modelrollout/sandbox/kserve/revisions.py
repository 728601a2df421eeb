"""KServe's revision and traffic semantics as pure functions: spec + last status -> new status.

The local KServe controller calls :func:`plan` (which revisions the spec needs), asks its
:class:`~modelrollout.sandbox.kserve.runtime.RevisionRuntime` which of them are ready, then
:func:`next_status` for the status to write and the revisions to retire.

Serverless mode, after KServe's "Canary Rollout Strategy" and "Canary Rollout Example" pages
and the Knative Serving traffic-management docs:

- every change of ``spec.predictor`` other than ``canaryTrafficPercent`` makes a new revision
  ``<isvc>-predictor-<00001…>`` (``latestCreatedRevision``); once its model server is ready it
  is ``latestReadyRevision``;
- with ``canaryTrafficPercent: c`` and a revision rolled out before, traffic is
  ``latest`` (``latestRevision: true``) ``c`` percent and ``prev`` (the rolled-out revision)
  ``100 - c``; without the field, or with nothing rolled out yet, ``latest`` takes 100%;
- ``latest`` always means the latest *ready* revision, as in Knative: while a new revision is
  not ready, that share stays on the one before, ``PredictorReady`` and ``Ready`` are False
  (reason ``RevisionMissing``);
- a ``latest`` entry at 100% on a revision not yet rolled out makes it
  ``latestRolledoutRevision`` (the one before becomes ``previousRolledoutRevision``); when a
  revision that was rolled out is sent back below 100% (the split then falls on one revision),
  ``previousRolledoutRevision`` is rolled out again, which is how KServe rolls back.

RawDeployment mode (annotation ``serving.kserve.io/deploymentMode: RawDeployment``), after
KServe 0.21's API reference for ``spec.canary`` and ``status.canaryStatuses``:
``spec.predictor`` and each ``spec.canary[i].predictor`` are a Deployment of their own, named
``<isvc>-<predictor.name>-predictor`` (``<isvc>-predictor`` for an unnamed predictor); a spec
change rolls out as a new revision, the old one serving until the new one is ready. Canary
``i`` gets its ``trafficPercent`` once one of its revisions is ready, the predictor the rest;
``status.canaryStatuses[i]`` is ``{name: <its predictor.name>, ready, trafficPercent}``
(``<isvc>-canary-<i>`` when unnamed). Naming the predictor after a canary promotes that
canary without a restart: its Deployment, and so its ready revision, becomes the predictor's.

The controller's bookkeeping (the revision counter, each revision's slot, storage URI and
predictor spec, and which revision of each slot serves) lives in ``status.annotations``, so a
restarted controller carries on where the last one stopped.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

SERVERLESS = "Serverless"
RAW_DEPLOYMENT = "RawDeployment"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
CANARY_PERCENT = "canaryTrafficPercent"

_BOOK = "sandbox.modelrollout.io/"
COUNTER = _BOOK + "revision-counter"
REVISIONS = _BOOK + "revisions"
SERVING = _BOOK + "serving"

PREDICTOR = "predictor"  # the component, in status.components
DOMAIN = "sandbox.local"

READY, PREDICTOR_READY, INGRESS_READY = "Ready", "PredictorReady", "IngressReady"
REVISION_MISSING = "RevisionMissing"
NO_READY_REVISION = "NoReadyRevision"
CANARY_NOT_READY = "CanaryNotReady"


@dataclass(frozen=True)
class Revision:
    """One version of one slot's predictor spec, and the model server that runs it.

    A slot is what a spec change rolls forward: the Knative configuration
    ``<isvc>-predictor`` in serverless mode, a Deployment in raw mode.
    """

    name: str
    slot: str
    storage_uri: str | None
    predictor: Mapping[str, Any]
    digest: str
    retired: bool = False


@dataclass(frozen=True)
class Book:
    """The controller's bookkeeping for one InferenceService (kept in ``status.annotations``).

    ``revisions`` is in creation order; ``serving`` names, per slot, the newest ready revision.
    """

    counter: int = 0
    revisions: Mapping[str, Revision] = field(default_factory=dict)
    serving: Mapping[str, str] = field(default_factory=dict)

    def created(self, slot: str) -> Revision | None:
        """The newest revision of ``slot``: the one its current spec asks for."""
        found = [r for r in self.revisions.values() if r.slot == slot]
        return found[-1] if found else None


@dataclass(frozen=True)
class Reconciled:
    status: dict[str, Any]
    live: frozenset[str]
    retire: tuple[str, ...]


# ---------------------------------------------------------------- spec -> revisions


def deployment_mode(isvc: Mapping[str, Any]) -> str:
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    return RAW_DEPLOYMENT if annotations.get(DEPLOYMENT_MODE) == RAW_DEPLOYMENT else SERVERLESS


def slots(isvc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Each deployable predictor spec by slot, the predictor's first (see :class:`Revision`)."""
    spec = isvc.get("spec") or {}
    found: dict[str, Mapping[str, Any]] = {predictor_slot(isvc): spec.get("predictor") or {}}
    for (_, slot), canary in zip(canaries(isvc), spec.get("canary") or (), strict=False):
        found[slot] = (canary or {}).get("predictor") or {}
    return found


def predictor_slot(isvc: Mapping[str, Any]) -> str:
    variant = ((isvc.get("spec") or {}).get("predictor") or {}).get("name")
    if deployment_mode(isvc) == RAW_DEPLOYMENT and variant:
        return _deployment(isvc, str(variant))
    return _deployment(isvc, None)


def canaries(isvc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Raw mode: each canary's name (its predictor's, else ``<isvc>-canary-<i>``) and slot."""
    if deployment_mode(isvc) != RAW_DEPLOYMENT:
        return []
    found = []
    for i, canary in enumerate((isvc.get("spec") or {}).get("canary") or ()):
        variant = ((canary or {}).get("predictor") or {}).get("name")
        if variant:
            found.append((str(variant), _deployment(isvc, str(variant))))
        else:
            found.append(
                (f"{isvc['metadata']['name']}-canary-{i}", _deployment(isvc, f"canary-{i}"))
            )
    return found


def _deployment(isvc: Mapping[str, Any], variant: str | None) -> str:
    name = isvc["metadata"]["name"]
    return f"{name}-{variant}-predictor" if variant else f"{name}-predictor"


def revision_spec(predictor: Mapping[str, Any]) -> dict[str, Any]:
    """What a revision is made of: the predictor without its traffic setting."""
    return {k: copy.deepcopy(v) for k, v in predictor.items() if k != CANARY_PERCENT}


def digest(predictor: Mapping[str, Any]) -> str:
    text = json.dumps(revision_spec(predictor), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_book(isvc: Mapping[str, Any]) -> Book:
    annotations = ((isvc.get("status") or {}).get("annotations")) or {}
    try:
        counter = int(annotations.get(COUNTER, "0"))
        stored = json.loads(annotations.get(REVISIONS, "{}"))
        serving = json.loads(annotations.get(SERVING, "{}"))
    except ValueError:
        return Book()
    revisions = {
        name: Revision(
            name=name,
            slot=entry["slot"],
            storage_uri=entry.get("storageUri"),
            predictor=entry.get("predictor") or {},
            digest=entry["digest"],
            retired=bool(entry.get("retired")),
        )
        for name, entry in stored.items()
    }
    return Book(counter, revisions, {k: v for k, v in serving.items() if v in revisions})


def book_annotations(book: Book) -> dict[str, str]:
    revisions = {}
    for revision in book.revisions.values():
        entry: dict[str, Any] = {
            "slot": revision.slot,
            "storageUri": revision.storage_uri,
            "digest": revision.digest,
            "predictor": revision.predictor,
        }
        if revision.retired:
            entry["retired"] = True
        revisions[revision.name] = entry
    return {
        COUNTER: str(book.counter),
        REVISIONS: json.dumps(revisions, sort_keys=True, separators=(",", ":")),
        SERVING: json.dumps(dict(book.serving), sort_keys=True, separators=(",", ":")),
    }


def plan(isvc: Mapping[str, Any]) -> Book:
    """The bookkeeping with a new revision for every slot whose spec changed."""
    book = read_book(isvc)
    revisions, counter = dict(book.revisions), book.counter
    for slot, predictor in slots(isvc).items():
        created = book.created(slot)
        wanted = digest(predictor)
        if created is not None and created.digest == wanted:
            continue
        counter += 1
        revision = Revision(
            name=f"{slot}-{counter:05d}",
            slot=slot,
            storage_uri=_storage_uri(predictor),
            predictor=revision_spec(predictor),
            digest=wanted,
        )
        revisions[revision.name] = revision
    return Book(counter, revisions, book.serving)


def to_check(isvc: Mapping[str, Any], book: Book) -> list[Revision]:
    """The revisions whose readiness the status needs: each slot's newest and serving ones,
    and (serverless) those in the last traffic split."""
    names = [r.name for s in slots(isvc) if (r := book.created(s)) is not None]
    names += [book.serving[s] for s in slots(isvc) if s in book.serving]
    component = _component(isvc)
    names += [t.get("revisionName") for t in component.get("traffic") or ()]
    return _known(book, names)


# ---------------------------------------------------------------- revisions -> status


def next_status(
    isvc: Mapping[str, Any], book: Book, ready: Mapping[str, bool], now: str
) -> Reconciled:
    """The status KServe would write for ``isvc`` given which revisions are ready.

    A revision missing from ``ready`` counts as not ready. ``live`` are the revisions that
    must keep running; ``retire`` those that may stop.
    """
    serving = dict(book.serving)
    for slot in slots(isvc):
        created = book.created(slot)
        if created is not None and ready.get(created.name, False):
            serving[slot] = created.name
    serving = {s: n for s, n in serving.items() if s in slots(isvc)}
    if deployment_mode(isvc) == RAW_DEPLOYMENT:
        status, live = _raw_status(isvc, book, serving, ready)
    else:
        status, live = _serverless_status(isvc, book, serving, ready)
    keep = live | _rolled_out(status)
    retire = tuple(n for n, r in book.revisions.items() if n not in live and not r.retired)
    revisions = {
        n: replace(r, retired=n not in live)
        for n, r in book.revisions.items()
        if n in keep or n in serving.values()
    }
    new_book = Book(book.counter, revisions, serving)
    previous = isvc.get("status") or {}
    name, namespace = isvc["metadata"]["name"], isvc["metadata"].get("namespace", "default")
    status["observedGeneration"] = isvc["metadata"].get("generation", 1)
    status["annotations"] = {**(previous.get("annotations") or {}), **book_annotations(new_book)}
    if live & set(serving.values()):
        status["url"] = f"http://{name}-{namespace}.{DOMAIN}"
        status["address"] = {"url": f"http://{name}.{namespace}.svc.{DOMAIN}"}
    status["conditions"] = _with_times(status["conditions"], previous.get("conditions"), now)
    return Reconciled(status, frozenset(live), retire)


def _serverless_status(
    isvc: Mapping[str, Any], book: Book, serving: Mapping[str, str], ready: Mapping[str, bool]
) -> tuple[dict[str, Any], set[str]]:
    name, namespace = isvc["metadata"]["name"], isvc["metadata"].get("namespace", "default")
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    percent = predictor.get(CANARY_PERCENT)
    before = _component(isvc)
    slot = predictor_slot(isvc)
    created = book.created(slot)
    latest_ready = serving.get(slot)
    rolled = _known_name(book, before.get("latestRolledoutRevision"))
    previous = _known_name(book, before.get("previousRolledoutRevision"))
    # KServe sets the split from the rolled-out revision, then records a revision as rolled
    # out from the split; a rollback takes one more round, so repeat until nothing moves.
    for _ in range(3):
        traffic = _knative_traffic(percent, rolled, latest_ready)
        moved = _propagate(traffic, latest_ready, created, rolled, previous)
        if moved == (rolled, previous):
            break
        rolled, previous = moved
    host = f"{name}-predictor-{namespace}.{DOMAIN}"
    entries = []
    for target in traffic:
        entry: dict[str, Any] = {
            "tag": target.tag,
            "revisionName": target.revision,
            "latestRevision": target.latest,
            "percent": target.percent,
            "url": f"http://{target.tag}-{host}",
        }
        if target.latest:
            entry["configurationName"] = f"{name}-predictor"
        entries.append(entry)
    component: dict[str, Any] = {"traffic": entries}
    for key, value in (
        ("latestCreatedRevision", created.name if created else None),
        ("latestReadyRevision", latest_ready),
        ("latestRolledoutRevision", rolled),
        ("previousRolledoutRevision", previous),
    ):
        if value:
            component[key] = value
    if entries:
        component["url"] = f"http://{host}"
    live = {t.revision for t in traffic} | ({created.name} if created else set())
    needed = ([created.name] if created else []) + sorted(live)
    unready = [n for n in dict.fromkeys(needed) if not ready.get(n, False)]
    predictor_ready = _condition(
        PREDICTOR_READY,
        not unready,
        REVISION_MISSING,
        f"revision {unready[0]} is not ready" if unready else "",
    )
    ingress = _condition(
        INGRESS_READY, bool(entries), NO_READY_REVISION, "no revision is ready for traffic"
    )
    status: dict[str, Any] = {
        "deploymentMode": SERVERLESS,
        "components": {PREDICTOR: component},
        "conditions": [ingress, predictor_ready, _overall(predictor_ready, ingress)],
        "modelStatus": _model_status(not unready),
    }
    return status, live


def _raw_status(
    isvc: Mapping[str, Any], book: Book, serving: Mapping[str, str], ready: Mapping[str, bool]
) -> tuple[dict[str, Any], set[str]]:
    name, namespace = isvc["metadata"]["name"], isvc["metadata"].get("namespace", "default")
    entries = list((isvc.get("spec") or {}).get("canary") or ())
    live: set[str] = set()
    for slot in slots(isvc):
        created = book.created(slot)
        live |= {created.name} if created else set()
        live |= {serving[slot]} if slot in serving else set()
    canary_statuses = []
    for (variant, slot), canary in zip(canaries(isvc), entries, strict=True):
        created = book.created(slot)
        percent = int((canary or {}).get("trafficPercent") or 0)
        canary_statuses.append(
            {
                "name": variant,
                "ready": created is not None and ready.get(created.name, False),
                "trafficPercent": percent if slot in serving else 0,
            }
        )
    slot = predictor_slot(isvc)
    created = book.created(slot)
    component: dict[str, Any] = {}
    if created is not None:
        component["latestCreatedRevision"] = created.name
    if slot in serving:
        component["latestReadyRevision"] = serving[slot]
        component["url"] = f"http://{name}-predictor-{namespace}.{DOMAIN}"
    up = created is not None and ready.get(created.name, False)
    predictor_ready = _condition(
        PREDICTOR_READY,
        up,
        REVISION_MISSING,
        f"revision {created.name if created else name} is not ready",
    )
    ingress = _condition(
        INGRESS_READY, slot in serving, NO_READY_REVISION, "the predictor is not ready"
    )
    waiting = [c["name"] for c in canary_statuses if not c["ready"]]
    overall = _overall(predictor_ready, ingress)
    if overall["status"] == "True" and waiting:
        overall = _condition(READY, False, CANARY_NOT_READY, f"{waiting[0]} is not ready")
    status: dict[str, Any] = {
        "deploymentMode": RAW_DEPLOYMENT,
        "components": {PREDICTOR: component},
        "conditions": [ingress, predictor_ready, overall],
        "modelStatus": _model_status(up),
    }
    if canary_statuses:
        status["canaryStatuses"] = canary_statuses
    return status, live


@dataclass(frozen=True)
class _Target:
    tag: str
    revision: str
    latest: bool
    percent: int


def _knative_traffic(percent: Any, rolled: str | None, latest_ready: str | None) -> list[_Target]:
    """KServe's traffic targets, resolved the way Knative resolves ``latestRevision``."""
    if latest_ready is None:
        return []
    if percent is None or rolled is None:
        return [_Target("latest", latest_ready, True, 100)]
    canary = int(percent)
    targets = [_Target("latest", latest_ready, True, canary)]
    if canary < 100:
        targets.append(_Target("prev", rolled, False, 100 - canary))
    return targets


def _propagate(
    traffic: Iterable[_Target],
    latest_ready: str | None,
    created: Revision | None,
    rolled: str | None,
    previous: str | None,
) -> tuple[str | None, str | None]:
    """Which revisions count as rolled out after this split (KServe's status propagation)."""
    traffic = list(traffic)
    totals: dict[str, int] = {}
    for target in traffic:
        totals[target.revision] = totals.get(target.revision, 0) + target.percent
    for target in traffic:
        if not target.latest or target.revision != latest_ready:
            continue
        if rolled != latest_ready:
            if target.percent == 100:
                return latest_ready, rolled
        elif (
            created is not None
            and latest_ready == created.name
            and target.percent < 100
            and totals[target.revision] == 100
            and previous
        ):
            return previous, previous
    return rolled, previous


def _rolled_out(status: Mapping[str, Any]) -> set[str]:
    component = (status.get("components") or {}).get(PREDICTOR) or {}
    keys = ("latestRolledoutRevision", "previousRolledoutRevision")
    return {component[k] for k in keys if component.get(k)}


def _component(isvc: Mapping[str, Any]) -> Mapping[str, Any]:
    return (((isvc.get("status") or {}).get("components")) or {}).get(PREDICTOR) or {}


def _known(book: Book, names: Iterable[Any]) -> list[Revision]:
    return [book.revisions[n] for n in dict.fromkeys(names) if n in book.revisions]


def _known_name(book: Book, name: Any) -> str | None:
    return name if isinstance(name, str) and name in book.revisions else None


def _storage_uri(predictor: Mapping[str, Any]) -> str | None:
    uri = (predictor.get("model") or {}).get("storageUri")
    return uri if isinstance(uri, str) else None


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    if ok:
        return {"type": kind, "status": "True"}
    return {"type": kind, "status": "False", "reason": reason, "message": message}


def _overall(*parts: Mapping[str, Any]) -> dict[str, Any]:
    failing = next((p for p in parts if p["status"] != "True"), None)
    if failing is None:
        return _condition(READY, True, "", "")
    return _condition(READY, False, failing["reason"], failing["message"])


def _model_status(loaded: bool) -> dict[str, Any]:
    state = "Loaded" if loaded else "Pending"
    return {
        "transitionStatus": "UpToDate" if loaded else "InProgress",
        "states": {"activeModelState": state, "targetModelState": "Loaded"},
    }


def _with_times(conditions: list[dict[str, Any]], before: Any, now: str) -> list[dict[str, Any]]:
    """Each condition with ``lastTransitionTime``: kept while its status stays the same."""
    old = {c.get("type"): c for c in before or () if isinstance(c, Mapping)}
    stamped = []
    for condition in conditions:
        previous = old.get(condition["type"])
        same = previous is not None and previous.get("status") == condition["status"]
        time = previous.get("lastTransitionTime") if same and previous else None
        stamped.append({**condition, "lastTransitionTime": time or now})
    return stamped
