"""Rollback latency: from a bad model's first request to canary weight 0, against a floor.

Run: ``python bench/rollback_latency.py`` (the sandbox extra; 6.4 to 9.9 minutes with ten runs
on a busy two-core machine, most of it model servers starting, two per run). ``--runs``
(at least 10; fewer only with ``--quick``), ``--rps`` (default 60: about 15 a second reach a
canary at 25%), ``--min-samples`` (the sequential judge's; default the sandbox scenario's 50),
``--base-port`` (default 18500: ports 18500..18506) and ``--run-dir`` (default: a temporary
directory, removed afterwards unless something failed or ``--keep`` is given).

The bench brings up a sandbox of its own (``modelrollout sandbox up``; its Prometheus scrapes
the router every second) and always brings it down. It registers a good baseline and, per run,
a fresh version that fails 30% of its predictions when served (``models.ERRORS``): the operator
never retries a version that already failed, so each run needs a version of its own. The
baseline is deployed from git, load goes to the InferenceService, then each run commits the
next bad version and waits until the rollout is rolled back and the InferenceService serves the
baseline alone again. The rollout judges one metric, ``errors`` (the sequential judge, canary
against stable), every second, over the steps 25% -> analysis -> 50% -> analysis.

Per run, on the machine's wall clock (every process here shares it):

- t0: the bad model's first request, from the first ``POST /v1/models/...`` line of its model
  server's access log (``<run-dir>/models/<namespace>.<revision>.log``, local time, truncated to
  the millisecond; uvicorn logs the line when the answer is sent, a few milliseconds after the
  request arrived);
- t1: the canary weight going to 0 in the InferenceService: the arrival of the watch event
  whose spec shows the operator's restore patch (``canaryTrafficPercent: 0`` with the storage
  URI back on the baseline). A watch delivers each change as it is written; the error is the
  delivery and thread-scheduling delay, milliseconds.

The rollback time is t1 - t0. Printed beside it: how long the canary took to serve
``minSamples`` requests (the judge waits for that many, as Prometheus counts them) and what
followed, the delay from the status first routing to the canary to t0 (a check that the log's
clock and this process's agree), how long after t1 the data plane's status stopped routing to
the bad revision, and the bad model's requests and errors.

The floor, measured in the same run after the last rollback: the scrape interval (read back
from Prometheus's loaded configuration) + the median time of one Prometheus query of the kind
the operator sends (the ``success-rate`` template's count queries rendered for the last bad
revision, through the operator's own Prometheus client) + the median time of one merge PATCH
of an InferenceService on the API emulator (an annotation on a scratch InferenceService).

The last line is ``RESULT median_s=… p95_s=… floor_s=… ratio_to_floor=…`` (the ratio is the
median over the floor). The p95 is by nearest rank: the ceil(0.95 n)-th smallest run, which with
10 to 19 runs is the slowest one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import io
import json
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import types
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from modelrollout import durations, templates
from modelrollout.metrics.prometheus import PrometheusProvider
from modelrollout.routing.kserve import MERGE_PATCH, reconciled
from modelrollout.routing.kserve_serverless import read_split
from modelrollout.sandbox import models, scenario
from modelrollout.sandbox.scenario import KSERVE, Sandbox, wait_for
from modelrollout.sandbox.up import SandboxError, down, up

NAMESPACE = "bench"
ISVC = "diabetes"
MODEL = "diabetes-bench"
MANIFEST = f"{NAMESPACE}/{ISVC}.yaml"
FLOOR_PROBE = "floor-probe"
MIN_RUNS = 10
BASELINE_SECONDS = 180.0
RUN_SECONDS = 150.0
FLOOR_SAMPLES = 20
CLOCK_SLACK_SECONDS = 30.0
ACCESS_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO \S+ - \"POST /v1/models/[^\"]*\" (\d{3})"
)

# ---------------------------------------------------------------- watching the InferenceService


@dataclass(frozen=True)
class Seen:
    """One version of the InferenceService, as a watch event delivered it."""

    at: float  # wall clock (seconds since the epoch) when the event arrived
    storage_uri: str | None
    canary_percent: int | None
    routed: Mapping[str, int]  # revision -> percent > 0, from status.components.predictor
    canary_uri: str | None  # what KServe reports (``read_split``, as the operator reads it)
    canary_revision: str | None
    canary_weight: int
    reconciled: bool  # the status is about this spec (observedGeneration == generation)
    obj: Mapping[str, Any]

    @classmethod
    def of(cls, at: float, obj: Mapping[str, Any]) -> Seen:
        predictor = (obj.get("spec") or {}).get("predictor") or {}
        component = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
        routed = {
            str(entry["revisionName"]): int(entry.get("percent") or 0)
            for entry in component.get("traffic") or ()
            if entry.get("revisionName") and int(entry.get("percent") or 0) > 0
        }
        percent = predictor.get("canaryTrafficPercent")
        split = read_split(obj)
        return cls(
            at=at,
            storage_uri=(predictor.get("model") or {}).get("storageUri"),
            canary_percent=None if percent is None else int(percent),
            routed=routed,
            canary_uri=split.canary_storage_uri,
            canary_revision=split.canary_revision,
            canary_weight=split.canary_weight or 0,
            reconciled=reconciled(obj),
            obj=obj,
        )


class IsvcWatch:
    """Every change of one InferenceService, stamped with its arrival, from a watch kept open
    in a thread (resumed from the last resourceVersion, listed again after 410 Gone)."""

    def __init__(self, kubeconfig: str, namespace: str, name: str) -> None:
        self._api_client = config.new_client_from_config(config_file=kubeconfig)
        self._namespace, self._name = namespace, name
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="isvc-watch", daemon=True)

    def __enter__(self) -> IsvcWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._api_client.close()

    def seen(self, since: float = 0.0) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if s.at >= since]

    def last(self) -> Seen | None:
        with self._lock:
            return self._seen[-1] if self._seen else None

    def _run(self) -> None:
        objects = client.CustomObjectsApi(self._api_client)
        version: str | None = None
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    objects.list_namespaced_custom_object,
                    *KSERVE[:2],
                    self._namespace,
                    KSERVE[2],
                    resource_version=version,
                    timeout_seconds=2,  # so that a stop is noticed soon
                ):
                    arrived = time.time()
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        version = None
                        break
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "DELETED" and obj["metadata"]["name"] == self._name:
                        with self._lock:
                            self._seen.append(Seen.of(arrived, obj))
                    if self._stop.is_set():
                        break
            except ApiException as error:
                if error.status == 410:
                    version = None
                else:
                    self._stop.wait(0.2)
            except (urllib3.exceptions.HTTPError, OSError):
                self._stop.wait(0.2)
            finally:
                stream.stop()


# ---------------------------------------------------------------- one run


@dataclass(frozen=True)
class Run:
    version: str
    revision: str
    seconds: float  # t1 - t0
    routed_to_first: float  # the status first routing to the revision -> t0 (a clock check)
    to_min_samples: float | None  # t0 -> the canary's minSamples-th answer
    routed_off_after: float | None  # t1 -> the status no longer routes to the revision
    requests: int
    errors: int
    reason: str
    first_request_from: str  # "log" or, when the log has no request, "status"
    cycle: float  # commit -> the baseline serving alone again

    @property
    def after_min_samples(self) -> float | None:
        """t1 - the canary's minSamples-th answer: what the operator's own reaction took."""
        return None if self.to_min_samples is None else self.seconds - self.to_min_samples


@dataclass(frozen=True)
class Access:
    at: float
    code: int


def accesses(log: Path) -> list[Access]:
    """The prediction requests a model server answered, from its access log (local time)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            match = ACCESS_LINE.match(line)
            if match:
                stamp = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
                found.append(Access(stamp.timestamp(), int(match[2])))  # naive: local time
    return found


def serves_alone(seen: Seen | None, uri: str) -> bool:
    """The InferenceService serves ``uri`` alone, settled (no canary, no previous revision)."""
    if seen is None:
        return False
    split = read_split(seen.obj)
    return split.ready and split.canary_storage_uri is None and split.stable_storage_uri == uri


def one_run(
    sandbox: Sandbox,
    isvcs: IsvcWatch,
    registered: models.Registered,
    baseline_uri: str,
    min_samples: int,
) -> Run:
    started = time.time()
    sandbox.commit_manifest(MANIFEST, registered.uri, f"{MODEL} v{registered.version} (bad)")

    def rolled_back() -> dict[str, Any] | None:
        status = sandbox.status(NAMESPACE, ISVC)
        done = status.get("phase") == "Failed" and not status.get("canary")
        history = [
            h
            for h in status.get("history") or ()
            if (h.get("model") or {}).get("version") == registered.version
        ]
        if done and history and serves_alone(isvcs.last(), baseline_uri):
            found: dict[str, Any] = history[-1]
            return found
        return None

    entry = wait_for(f"v{registered.version} rolled back", rolled_back, RUN_SECONDS, every=0.5)
    seen = isvcs.seen(since=started)
    # The first version KServe reports routing a share to the bad model's own revision.
    routed = next(
        (
            s
            for s in seen
            if s.reconciled and s.canary_weight > 0 and s.canary_uri not in (None, baseline_uri)
        ),
        None,
    )
    if routed is None or routed.canary_revision is None:
        raise RuntimeError(f"v{registered.version}: the watch never saw the canary take traffic")
    bad_uri, revision = routed.canary_uri, routed.canary_revision
    weight_zero = next(
        (
            s
            for s in seen
            if s.at >= routed.at and (s.storage_uri != bad_uri or not s.canary_percent)
        ),
        None,
    )
    if weight_zero is None:
        raise RuntimeError(f"v{registered.version}: the watch never saw the canary weight at 0")
    off = next((s for s in seen if s.at >= weight_zero.at and revision not in s.routed), None)
    served = accesses(sandbox.run_dir / "models" / f"{NAMESPACE}.{revision}.log")
    t0, source = (served[0].at, "log") if served else (routed.at, "status")
    if abs(t0 - routed.at) > CLOCK_SLACK_SECONDS:
        raise RuntimeError(
            f"the model server's log and this process disagree on the time by "
            f"{t0 - routed.at:.1f} s: do they run with the same TZ?"
        )
    return Run(
        version=registered.version,
        revision=revision,
        seconds=weight_zero.at - t0,
        routed_to_first=t0 - routed.at,
        to_min_samples=(
            served[min_samples - 1].at - t0 if min_samples and len(served) >= min_samples else None
        ),
        routed_off_after=off.at - weight_zero.at if off is not None else None,
        requests=len(served),
        errors=sum(1 for a in served if a.code >= 500),
        reason=str(entry.get("reason", "?")),
        first_request_from=source,
        cycle=time.time() - started,
    )


# ---------------------------------------------------------------- the floor


@dataclass(frozen=True)
class Floor:
    scrape_s: float
    query_s: float
    patch_s: float

    @property
    def total(self) -> float:
        return self.scrape_s + self.query_s + self.patch_s


def scrape_interval(prometheus: str) -> float:
    """The global scrape interval of the configuration Prometheus has loaded."""
    url = prometheus + "/api/v1/status/config"
    with urllib.request.urlopen(url, timeout=10) as answer:
        loaded = yaml.safe_load(json.loads(answer.read())["data"]["yaml"])
    return durations.parse(str(loaded["global"]["scrape_interval"]))


def query_seconds(prometheus: str, revision: str, stable: str, since_seconds: float) -> list[float]:
    """Times of the success-rate template's count queries, rendered as the operator renders
    them for ``revision`` and sent through the operator's Prometheus client."""
    counts = scenario.metric_templates(prometheus)["success-rate"]["counts"]
    variables = templates.variables(
        namespace=NAMESPACE,
        inference_service=ISVC,
        stable_revision=stable,
        canary_revision=revision,
        interval="1s",
        since_canary_start_seconds=since_seconds,
    )
    arm = templates.for_arm(variables, templates.CANARY_REVISION)
    queries = [templates.render(counts[kind], arm) for kind in ("total", "bad")]
    provider = PrometheusProvider(prometheus)

    async def timed() -> list[float]:
        found = []
        for index in range(FLOOR_SAMPLES * len(queries)):
            began = time.perf_counter()
            await provider.samples(queries[index % len(queries)], timeout_seconds=5.0)
            found.append(time.perf_counter() - began)
        return found

    return asyncio.run(timed())


def patch_seconds(sandbox: Sandbox) -> list[float]:
    """Times of a merge PATCH (one annotation) of a scratch InferenceService on the emulator;
    it names no model, so the data plane starts nothing for it."""
    group, version, plural = KSERVE
    body = {
        "apiVersion": f"{group}/{version}",
        "kind": "InferenceService",
        "metadata": {"name": FLOOR_PROBE, "namespace": NAMESPACE},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
    }
    objects = sandbox.objects
    objects.create_namespaced_custom_object(group, version, NAMESPACE, plural, body)
    found = []
    try:
        for index in range(FLOOR_SAMPLES):
            patch = {"metadata": {"annotations": {"bench.modelrollout.io/probe": str(index)}}}
            began = time.perf_counter()
            objects.patch_namespaced_custom_object(
                group, version, NAMESPACE, plural, FLOOR_PROBE, patch, _content_type=MERGE_PATCH
            )
            found.append(time.perf_counter() - began)
    finally:
        objects.delete_namespaced_custom_object(group, version, NAMESPACE, plural, FLOOR_PROBE)
    return found


# ---------------------------------------------------------------- the whole bench


def nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


def rollout_spec(git_url: str, min_samples: int | None) -> dict[str, Any]:
    spec = scenario.canary_spec(git_url, MANIFEST, ISVC, metrics=("errors",), interval="1s")
    if min_samples is not None:
        for metric in spec["strategy"]["analysis"]["metrics"]:
            metric["sequential"] = {**metric["sequential"], "minSamples": min_samples}
    return spec


def bench(run_dir: Path, args: argparse.Namespace) -> int:
    began = time.monotonic()
    up(run_dir, args.base_port, out=lambda _line: None)
    print(f"sandbox up in {time.monotonic() - began:.1f} s ({run_dir}, ports {args.base_port}..)")
    sandbox = Sandbox(run_dir)
    try:
        sandbox.namespace(NAMESPACE)
        sandbox.apply_templates(NAMESPACE)
        step = time.monotonic()
        # Quiet MLflow's client in this process only (the sandbox's processes are running).
        os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            versions = models.register(
                sandbox.urls["mlflow"], MODEL, [models.BASELINE] + [models.ERRORS] * args.runs
            )
        baseline, bad = versions[0], versions[1:]
        print(f"registered {len(versions)} versions in {time.monotonic() - step:.1f} s")
        spec = rollout_spec(sandbox.state["gitUrl"], args.min_samples)
        min_samples = int(spec["strategy"]["analysis"]["metrics"][0]["sequential"]["minSamples"])
        with IsvcWatch(sandbox.state["kubeconfig"], NAMESPACE, ISVC) as isvcs:
            step = time.monotonic()
            sandbox.commit_manifest(MANIFEST, baseline.uri, f"{MODEL} v{baseline.version}")
            sandbox.apply_rollout(NAMESPACE, ISVC, spec)

            def baseline_serves() -> str | None:
                last = isvcs.last()
                status = sandbox.status(NAMESPACE, ISVC)
                stable = (status.get("stable") or {}).get("version")
                if last is None or status.get("phase") != "Succeeded" or stable != baseline.version:
                    return None
                uri = last.storage_uri
                return uri if uri and serves_alone(last, uri) else None

            baseline_uri = wait_for("the baseline deployed", baseline_serves, BASELINE_SECONDS)
            sandbox.load({(NAMESPACE, ISVC): args.rps})
            wait_for(
                "load reaching the baseline",
                lambda: True if sum(sandbox.served(NAMESPACE).values()) >= args.rps else None,
                60,
            )
            print(
                f"baseline v{baseline.version} serving under {args.rps:g} requests/s after "
                f"{time.monotonic() - step:.1f} s; minSamples {min_samples}, analysis every 1s"
            )
            print(LEGEND)
            print(HEADER)
            runs: list[Run] = []
            for number, registered in enumerate(bad, 1):
                runs.append(one_run(sandbox, isvcs, registered, baseline_uri, min_samples))
                print(row(number, runs[-1]), flush=True)
            last = isvcs.last()
            stable = next(iter(last.routed)) if last is not None and last.routed else ""
        seconds = [r.seconds for r in runs]
        median, p95 = statistics.median(seconds), nearest_rank(seconds, 0.95)
        queries = query_seconds(sandbox.urls["prometheus"], runs[-1].revision, stable, median)
        patches = patch_seconds(sandbox)
        floor = Floor(
            scrape_interval(sandbox.urls["prometheus"]),
            statistics.median(queries),
            statistics.median(patches),
        )
    finally:
        sandbox.load({})
        sandbox.close()
    print(
        f"rollback t1-t0 over {len(runs)} runs: median {median:.3f} s, p95 {p95:.3f} s "
        f"(nearest rank: run {math.ceil(0.95 * len(runs))} of {len(runs)} by time), "
        f"min {min(seconds):.3f} s, max {max(seconds):.3f} s"
    )
    reactions = [r.after_min_samples for r in runs if r.after_min_samples is not None]
    if reactions:
        print(
            f"of which after the canary's {min_samples}th answer (the judge's minSamples): "
            f"median {statistics.median(reactions):.3f} s, max {max(reactions):.3f} s "
            f"over {len(reactions)} runs"
        )
    print(
        f"floor {floor.total:.3f} s = scrape interval {floor.scrape_s:.3f} s (Prometheus config) "
        f"+ one count query {floor.query_s * 1000:.1f} ms (median of {len(queries)}) "
        f"+ one merge PATCH {floor.patch_s * 1000:.1f} ms (median of {len(patches)})"
    )
    print(f"took {time.monotonic() - began:.1f} s")
    print(
        f"RESULT median_s={median:.3f} p95_s={p95:.3f} floor_s={floor.total:.3f} "
        f"ratio_to_floor={median / floor.total:.3f}"
    )
    return 0


LEGEND = """\
t0 = the bad model's first request (its model server's access log, 1 ms); t1 = canary weight 0
in the InferenceService (arrival of the watch event). Columns: t1-t0; t0 -> the canary's
minSamples-th answer; t1 - that answer; the status first routing to the canary -> t0 (a clock
check); t1 -> the status no longer routing to it; the bad model's requests and errors; the
whole cycle (commit -> baseline alone again); the rollback reason. "after s" may be negative:
the judge counts requests with PromQL increase(), which extrapolates to the window's edges."""
HEADER = (
    f"{'run':>3} {'version':>7} {'revision':<26} {'t1-t0 s':>8} {'min s':>6} {'after s':>7} "
    f"{'routed ms':>9} {'off ms':>6} {'req':>4} {'err':>4} {'cycle s':>7}  reason"
)


def row(number: int, run: Run) -> str:
    return (
        f"{number:>3} {run.version:>7} {run.revision:<26} {run.seconds:>8.3f} "
        f"{_maybe(run.to_min_samples, 1, 3):>6} {_maybe(run.after_min_samples, 1, 3):>7} "
        f"{run.routed_to_first * 1000:>9.0f} {_maybe(run.routed_off_after, 1000, 0):>6} "
        f"{run.requests:>4} {run.errors:>4} {run.cycle:>7.1f}  {run.reason}"
        + ("" if run.first_request_from == "log" else " (no request logged: t0 from the status)")
    )


def _maybe(value: float | None, scale: float, digits: int) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=MIN_RUNS, help="bad versions rolled back")
    parser.add_argument("--quick", action="store_true", help="allow fewer than 10 runs (smoke)")
    parser.add_argument("--rps", type=float, default=60.0, help="load on the InferenceService")
    parser.add_argument(
        "--min-samples",
        type=int,
        default=None,
        help="the sequential judge's minSamples (default: the sandbox scenario's)",
    )
    parser.add_argument("--base-port", type=int, default=18500, help="first of 7 ports")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    args = parser.parse_args(argv)
    if args.runs < 1 or (args.runs < MIN_RUNS and not args.quick):
        parser.error(f"--runs must be at least {MIN_RUNS} (fewer only with --quick)")
    if args.rps <= 0:
        parser.error("--rps must be positive")
    return args


def _interrupt(signum: int, _frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a kill runs the same clean-up as Ctrl-C
    temporary = args.run_dir is None
    run_dir = (
        Path(tempfile.mkdtemp(prefix="modelrollout-bench-"))
        if temporary
        else args.run_dir.resolve()
    )
    ok = False
    try:
        code = bench(run_dir, args)
        ok = code == 0
        return code
    except SandboxError as error:
        print(f"rollback_latency: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rollback_latency: interrupted", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            down(run_dir, out=lambda _line: None)
        if temporary and ok and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"logs and data kept in {run_dir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
