"""Driving a running sandbox as a user would: commit manifests, apply rollouts, send load, look.

:class:`Sandbox` reads ``sandbox.json`` of a sandbox started by ``modelrollout sandbox up`` and
does what an ML platform engineer does with a cluster: create a namespace, apply the
MetricTemplates and a git-sourced ModelRollout, commit and push a manifest naming an MLflow
model version (the bare repository's hook tells the operator), point load at an
InferenceService, and read the rollout, the InferenceService, the events and the registry.
The demo, the end-to-end suite and ``bench/rollback_latency.py`` all drive the sandbox
through it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelrollout import api
from modelrollout.sandbox.up import SandboxError, read_state, write_load

T = TypeVar("T")
GIT_AUTHOR = ["-c", "user.name=Sandbox Release", "-c", "user.email=release@sandbox.invalid"]
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
#: The keys of the credentials Secret (:meth:`Sandbox.credentials`): MLflow's own variable
#: name for the registry, and one the MetricTemplates' ``secretRef.key`` names.
MLFLOW_TOKEN_KEY = "MLFLOW_TRACKING_TOKEN"
PROMETHEUS_TOKEN_KEY = "prometheus-token"

# The queries of deploy/examples' templates, pointed at the sandbox's Prometheus; each has the
# counts the sequential and drift judges need.
CANARY, ARM = "{{ canaryRevision }}", "{{ revision }}"


def _series(metric: str, arm: str, extra: str = "") -> str:
    return f'{metric}{{namespace_name="{{{{ namespace }}}}", revision_name="{arm}"{extra}}}'


def metric_templates(prometheus: str, secret: str | None = None) -> dict[str, dict[str, Any]]:
    """success-rate, latency-p99 and prediction-histogram specs for a Prometheus address;
    with ``secret``, the bearer token is read from that Secret."""
    provider: dict[str, Any] = {"prometheus": {"address": prometheus, "timeout": "5s"}}
    if secret:
        provider["prometheus"]["secretRef"] = {"name": secret, "key": PROMETHEUS_TOKEN_KEY}
    requests, latency = "revision_app_request_count", "revision_app_request_latencies_bucket"
    predictions = "modelrollout_prediction_value_bucket"
    good = _series(requests, CANARY, ', response_code_class!="5xx"')
    every = _series(requests, CANARY)
    total = _series(requests, ARM)
    bad = _series(requests, ARM, ', response_code_class="5xx"')
    since = "[{{ sinceCanaryStart }}]"
    return {
        "success-rate": {
            "description": "Share of canary requests answered without a 5xx error.",
            "provider": provider,
            "query": f"sum(rate({good}[{{{{ interval }}}}])) / "
            f"(sum(rate({every}[{{{{ interval }}}}])) > 0)",
            "counts": {
                "total": f"sum(increase({total}{since}))",
                "bad": f"sum(increase({bad}{since})) or vector(0)",
            },
        },
        "latency-p99": {
            "description": "99th percentile request latency of the canary, in milliseconds.",
            "provider": provider,
            "query": "histogram_quantile(0.99, sum by (le) "
            f"(rate({_series(latency, CANARY)}[{{{{ interval }}}}])))",
            "counts": {"buckets": f"sum by (le) (increase({_series(latency, ARM)}{since}))"},
        },
        "predictions": {
            "description": "Histogram of predicted values of one arm since the canary started.",
            "provider": provider,
            "counts": {"buckets": f"sum by (le) (increase({_series(predictions, ARM)}{since}))"},
        },
    }


SEQUENTIAL = {"tolerance": 0.2, "minSamples": 50, "maxSamples": 300}
METRICS: dict[str, dict[str, Any]] = {
    # Errors and latency: the canary against the stable, anytime-valid (the sequential judge).
    "errors": {"templateRef": {"name": "success-rate"}, "judge": "sequential",
               "sequential": SEQUENTIAL},
    "latency": {"templateRef": {"name": "latency-p99"}, "judge": "sequential",
                "sequential": SEQUENTIAL},
    # Predictions: the canary's histogram against the stable's. The baseline and the better
    # model of the sandbox differ by a PSI of about 0.15 over the whole dataset (the better
    # one predicts below 50 for 1.8% of the rows, the baseline never does). Judged every
    # interval on 150 to 400 canary predictions against three times as many stable ones,
    # chance lifts that to as much as 0.7: with a maximum of 0.5, about one rollout of the
    # good model in a hundred failed in simulation. A +80 shift reads 2.1 or more.
    "drift": {"templateRef": {"name": "predictions"}, "judge": "drift",
              "drift": {"statistic": "psi", "max": 1.0, "minSamples": 150}},
}  # fmt: skip
STEPS: tuple[dict[str, Any], ...] = (
    {"setWeight": 25},
    {"analysis": {}},
    {"setWeight": 50},
    {"analysis": {}},
)


def canary_spec(
    git_url: str,
    path: str,
    isvc: str,
    *,
    metrics: tuple[str, ...] = ("errors", "latency", "drift"),
    steps: tuple[dict[str, Any], ...] = STEPS,
    interval: str = "2s",
    inconclusive_limit: int = 3,
    progress_deadline_seconds: int = 120,
    registry_secret: str | None = None,
) -> dict[str, Any]:
    """A git-sourced ModelRollout spec for the sandbox: the model from ``path`` in the
    sandbox's repository, checked every ``interval``, gated on ``validation_status``,
    MLflow's ``champion`` alias moved on promotion; with ``registry_secret``, MLflow's
    credentials come from that Secret."""
    secret_ref = {"secretRef": {"name": registry_secret}} if registry_secret else {}
    return {
        "model": {"git": {"repository": git_url, "ref": "main", "path": path, "interval": "10s"}},
        "target": {
            "inferenceService": isvc,
            "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
        },
        "registry": {
            **secret_ref,
            "gates": {"requiredTags": {"validation_status": "approved"}},
            "writeBack": {"alias": "champion"},
        },
        "strategy": {
            "steps": [dict(step) for step in steps],
            "analysis": {
                "interval": interval,
                "metrics": [
                    {"name": name, **METRICS[name], "inconclusiveLimit": inconclusive_limit}
                    for name in metrics
                ],
            },
        },
        "progressDeadlineSeconds": progress_deadline_seconds,
    }


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


class Sandbox:
    """A running sandbox, from its run directory."""

    def __init__(self, run_dir: Path) -> None:
        state = read_state(run_dir)
        if state is None:
            raise SandboxError(f"no sandbox in {run_dir}: run `modelrollout sandbox up` first")
        self.run_dir = run_dir
        self.state = state
        self.urls: dict[str, str] = state["urls"]
        self.api_client = config.new_client_from_config(config_file=state["kubeconfig"])
        self.objects = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.work_tree = run_dir / "git" / "work"

    def close(self) -> None:
        self.api_client.close()

    # ---------------------------------------------------------------- Kubernetes

    def namespace(self, name: str) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name}})
        except ApiException as error:
            if error.status != 409:
                raise

    def credentials(
        self, namespace: str, name: str, *, mlflow_token: str, prometheus_token: str
    ) -> None:
        """A Secret with an MLflow and a Prometheus token, for :func:`canary_spec`'s
        ``registry_secret`` and :meth:`apply_templates`' ``secret`` (the sandbox's MLflow and
        Prometheus take requests without one, and ignore it)."""
        body = {
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "stringData": {MLFLOW_TOKEN_KEY: mlflow_token, PROMETHEUS_TOKEN_KEY: prometheus_token},
        }
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
            self.core.replace_namespaced_secret(name, namespace, body)

    def apply_templates(self, namespace: str, secret: str | None = None) -> None:
        for name, spec in metric_templates(self.urls["prometheus"], secret).items():
            body = {
                "apiVersion": api.API_VERSION,
                "kind": "MetricTemplate",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }
            self._apply(namespace, "metrictemplates", body)

    def apply_rollout(self, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
        body = {
            "apiVersion": api.API_VERSION,
            "kind": api.ROLLOUT_KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": dict(spec),
        }
        self._apply(namespace, "modelrollouts", body)

    def _apply(self, namespace: str, plural: str, body: dict[str, Any]) -> None:
        group, version = api.API_VERSION.split("/")
        name = body["metadata"]["name"]
        try:
            self.objects.create_namespaced_custom_object(group, version, namespace, plural, body)
        except ApiException as error:
            if error.status != 409:
                raise
            self.objects.patch_namespaced_custom_object(
                group, version, namespace, plural, name, {"spec": body["spec"]}
            )

    def rollout(self, namespace: str, name: str) -> dict[str, Any]:
        group, version = api.API_VERSION.split("/")
        found: dict[str, Any] = self.objects.get_namespaced_custom_object(
            group, version, namespace, "modelrollouts", name
        )
        return found

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.rollout(namespace, name).get("status") or {}
        return found

    def inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.objects.get_namespaced_custom_object(
                *KSERVE[:2], namespace, KSERVE[2], name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about the rollout, oldest first, as plain dicts (reason, type, message)."""
        listed = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        )
        items = sorted(
            (e for e in listed.items if e.involved_object.kind == api.ROLLOUT_KIND),
            key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp,
        )
        return [
            {"reason": e.reason, "type": e.type, "message": e.message or "", "count": e.count}
            for e in items
        ]

    def wait_rollout(
        self,
        namespace: str,
        name: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
        what: str = "",
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            found = self.status(namespace, name)
            return found if done(found) else None

        return wait_for(what or f"{namespace}/{name}", probe, timeout)

    # ---------------------------------------------------------------- git

    def commit_manifest(self, path: str, model_uri: str, notes: str) -> str:
        """Commit ``path`` naming ``model_uri`` and push it to the sandbox's repository;
        the commit id."""
        self._work_tree()
        target = self.work_tree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        body = {"modelUri": model_uri, "notes": notes, "approvedBy": ["sandbox-release"]}
        target.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
        self._git("add", path)
        self._git(*GIT_AUTHOR, "commit", "--quiet", "--allow-empty", "-m", notes)
        self._git("push", "--quiet", "origin", "HEAD:main")
        return self._git("rev-parse", "HEAD").strip()

    def _work_tree(self) -> None:
        if (self.work_tree / ".git").exists():
            self._git("fetch", "--quiet", "origin")
            if self._git("ls-remote", "origin", "refs/heads/main").strip():
                self._git("reset", "--quiet", "--hard", "origin/main")
            return
        self.work_tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "clone", "--quiet", self.state["gitRepository"], str(self.work_tree)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self._git("checkout", "--quiet", "-B", "main")

    def _git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.work_tree), *args],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise SandboxError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    # ---------------------------------------------------------------- load and metrics

    def load(self, targets: Mapping[tuple[str, str], float]) -> None:
        """Send each (namespace, InferenceService) that many predictions a second, nothing
        else (an empty mapping stops the load)."""
        write_load(
            Path(self.state["loadFile"]),
            [
                {"namespace": ns, "inferenceService": isvc, "rps": rps}
                for (ns, isvc), rps in targets.items()
            ],
        )

    def served(self, namespace: str) -> dict[str, float]:
        """Requests the router answered per revision of ``namespace`` (its /metrics)."""
        return served_by_router(self.urls["router"], namespace)

    def prometheus(self, query: str) -> list[dict[str, Any]]:
        from urllib.parse import urlencode

        url = self.urls["prometheus"] + "/api/v1/query?" + urlencode({"query": query})
        with _open(url) as answer:
            found: list[dict[str, Any]] = json.loads(answer.read())["data"]["result"]
            return found


def served_by_router(router: str, namespace: str) -> dict[str, float]:
    """Requests the sandbox router at ``router`` answered per revision of ``namespace``, all
    response codes together (its ``revision_app_request_count`` series)."""
    with _open(router + "/metrics") as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("revision_app_request_count{") and (
            f'namespace_name="{namespace}"' in line
        ):
            revision = line.split('revision_name="', 1)[1].split('"', 1)[0]
            counts[revision] = counts.get(revision, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def _open(url: str) -> Any:
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)
