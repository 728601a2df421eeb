"""Scale: N concurrent ModelRollouts in one operator process against the API emulator.

Run: ``python bench/scale.py`` (the sandbox extra) for N = 100, 300 and 1,000; ``--sizes 5``
for a smoke run (about a minute); ``--profile out.html`` runs the operator under pyinstrument
and writes one profile per size (``out-n1000.html``, ``.txt`` and the ``.pyisession``).
``--pause`` (default 60 s) sets the pauses (0.6 to 1.4 times it across the rollouts),
``--spread`` (default: ``--pause``) how long the canaries take to start, ``--timer-seconds``
the operator's ``MODELROLLOUT_TIMER_SECONDS`` (default: its own, 5 s). A minute is a short
canary step as these are written (Flagger's analysis interval defaults to one minute; Argo
Rollouts' pauses run for minutes); ``--pause 5`` is a stress run: 1,000 canaries then ask for
some 200 steps a second, more than this machine does (bench/README.md).

Per size, fresh processes on 127.0.0.1 in a temporary directory: the API emulator (with
``crds/`` and the KServe CRD), the local KServe controller (``--runtime instant``: every
revision is Ready at once) and ONE operator (``python -m modelrollout.cli run`` with the
static registry and the static metric provider, which answers from a JSON file). The bench

1. creates N ModelRollouts serving v1 at once and waits until every one is Succeeded (the
   first deployment: not measured, except in the peak RSS);
2. starts a canary in each by patching ``spec.model.uri`` to v2, spread evenly over
   ``--spread`` seconds: created together, every due of every rollout falls in the same
   instant, which measures how long one burst of N passes takes to drain rather than how
   late a rollout moves; rollouts that start at independent times spread their dues out;
3. waits until every rollout is Succeeded on v2. Each canary walks
   ``setWeight 20, pause, setWeight 50, pause, setWeight 80, pause`` with a background
   analysis (one threshold metric from the static provider, about every pause), then
   promotes: 6 strategy steps and the promotion, 7 steps per rollout. The pauses run from
   0.6 to 1.4 times ``--pause`` across the rollouts: one length for all would line every
   due time up with a fixed-period timer's ticks.

Figures (the operator process only):

- **step lag**: for each timed pause of each rollout, the due time is the pause's
  ``status.stepStartedAt`` (the operator's own stamp, microseconds, on this machine's wall
  clock, which the bench shares) plus the pause's duration. The bench watches the
  ModelRollouts and notes, on the same wall clock, when the first status past the pause
  arrives (``currentStepIndex`` beyond it, or the canary gone). lag = that arrival minus the
  due time. It includes the pass, the status write and the watch delivery, so it is what a
  user sees, and a slight over-estimate of when the operator decided. Also printed: the
  decision lag, the next step's ``stepStartedAt`` minus the due time (the start of the pass
  that moved; it excludes the write). Percentiles are by nearest rank.
- **cpu_ms_per_step**: the operator's CPU time (utime + stime from ``/proc/<pid>/stat``)
  from the first canary patch to the last promotion, over the steps taken (7 a rollout).
- **rss_mb**: the operator's peak RSS (``VmHWM`` in ``/proc/<pid>/status``) at the end, MiB.

Also per size: reconcile passes per step and their mean duration (the operator's
``/metrics``), the operator's API calls per step (the emulator's audit) and the emulator's CPU.
Each size prints one line of figures with the load average (other work on the machine makes
the figures noisy); the last line is ``RESULT n=… lag_p99_s=… rss_mb=… cpu_ms_per_step=…``
for the largest size.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
OPERATOR_DIR = REPO / "operator"
sys.path.insert(0, str(OPERATOR_DIR))

from modelrollout import api  # noqa: E402
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess  # noqa: E402

NAMESPACE = "scale"
QUERY = "modelrollout_scale_success_rate"
WEIGHTS = (20, 50, 80)
#: Strategy steps plus the promotion.
STEPS_PER_ROLLOUT = 2 * len(WEIGHTS) + 1
TOKEN = "sandbox-token"


# ---------------------------------------------------------------- pure parts


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100): the ceil(q/100 * n)-th smallest."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Seen:
    """One watch event of one rollout: when it arrived (wall clock) and its status fields."""

    at: float
    step: int | None
    step_started_at: str | None
    canary: bool
    phase: str | None


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pause_lags(
    timeline: Sequence[Seen], pauses: Iterable[int], pause_seconds: float
) -> tuple[list[float], list[float]]:
    """Per timed pause of one rollout's canary: (observed lag, decision lag) in seconds.

    The due time is the pause's ``stepStartedAt`` plus ``pause_seconds``. The observed lag
    ends at the first event after the pause (a later step, or no canary any more); the
    decision lag at the ``stepStartedAt`` of the step that came next, when there is one.
    A pause never seen, or not left, gives nothing.
    """
    observed: list[float] = []
    decided: list[float] = []
    for pause in pauses:
        entered = next(
            (s for s in timeline if s.canary and s.step == pause and s.step_started_at), None
        )
        if entered is None or entered.step_started_at is None:
            continue
        due = _stamp(entered.step_started_at) + pause_seconds
        after = [s for s in timeline if s.at >= entered.at]
        left = next(
            (s for s in after if not s.canary or (s.step is not None and s.step > pause)), None
        )
        if left is None:
            continue
        observed.append(left.at - due)
        if left.canary and left.step == pause + 1 and left.step_started_at:
            decided.append(_stamp(left.step_started_at) - due)
    return observed, decided


# ---------------------------------------------------------------- the processes


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


class Child:
    """A process of the bench, logging to a file; stopped with a signal and a bounded wait."""

    def __init__(self, name: str, command: list[str], workdir: Path, env: Mapping[str, str]):
        self.log = workdir / f"{name}.log"
        environment = {**os.environ, **env}
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(OPERATOR_DIR), os.environ.get("PYTHONPATH")])
        )
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=workdir
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---------------------------------------------------------------- the rollouts


def rollout_body(name: str, version: int, pause_seconds: float) -> dict[str, Any]:
    pause = f"{pause_seconds:g}s"
    interval = f"{max(1.0, round(pause_seconds)):g}s"
    steps: list[dict[str, Any]] = []
    for weight in WEIGHTS:
        steps += [{"setWeight": weight}, {"pause": {"duration": pause}}]
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.ROLLOUT_KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"uri": f"models:/{name}/{version}"},
            "target": {
                "inferenceService": name,
                "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
            },
            "strategy": {
                "steps": steps,
                "analysis": {
                    "interval": interval,
                    "metrics": [
                        {"name": "success-rate", "query": QUERY, "thresholdRange": {"min": 0.99}}
                    ],
                },
            },
        },
    }


def pause_of(index: int, n: int, pause: float) -> float:
    """Rollout ``index``'s pause: from 0.6 to 1.4 times ``pause`` across the N rollouts, to
    0.1 s. One duration for all would line every due up with a fixed-period timer's ticks."""
    return round(pause * (0.6 + 0.8 * index / max(1, n - 1)), 1)


def pause_indices() -> list[int]:
    return [2 * k + 1 for k in range(len(WEIGHTS))]


class Watcher:
    """Every ModelRollout event of the namespace, stamped on arrival (wall clock)."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.timelines: dict[str, list[Seen]] = {}
        self.latest: dict[str, Seen] = {}
        self.stable: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self, resource_version: str) -> None:
        self.resource_version = resource_version
        self.thread.start()

    def _run(self) -> None:
        path = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{NAMESPACE}/{api.ROLLOUT_PLURAL}"
        while not self.stopping.is_set():
            query = urllib.parse.urlencode(
                {
                    "watch": "true",
                    "resourceVersion": self.resource_version,
                    "timeoutSeconds": "5",
                    "allowWatchBookmarks": "true",
                }
            )
            connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                connection.request("GET", f"{path}?{query}", headers=_headers())
                response = connection.getresponse()
                for line in response:
                    self._event(json.loads(line))
            except (OSError, http.client.HTTPException, ValueError) as error:
                print(f"  watch: {error}; reconnecting", file=sys.stderr)
            finally:
                connection.close()

    def _event(self, event: dict[str, Any]) -> None:
        at = time.time()
        obj = event.get("object", {})
        version = obj.get("metadata", {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if event.get("type") not in ("ADDED", "MODIFIED"):
            if event.get("type") == "ERROR":
                raise ValueError(f"watch error: {obj.get('message')}")
            return
        status = obj.get("status") or {}
        seen = Seen(
            at=at,
            step=status.get("currentStepIndex"),
            step_started_at=status.get("stepStartedAt"),
            canary=bool(status.get("canary")),
            phase=status.get("phase"),
        )
        name = obj["metadata"]["name"]
        stable = (status.get("stable") or {}).get("version")
        with self.lock:
            self.timelines.setdefault(name, []).append(seen)
            self.latest[name] = seen
            if stable is not None:
                self.stable[name] = str(stable)

    def count(self, phase: str, version: str) -> int:
        with self.lock:
            return sum(
                1
                for name, seen in self.latest.items()
                if seen.phase == phase and not seen.canary and self.stable.get(name) == version
            )

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}


def pass_counts(port: int) -> tuple[float, float]:
    """(passes, their summed seconds) from the operator's /metrics."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    found = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for kind in found:
            if line.startswith(f"modelrollout_decision_seconds_{kind} "):
                found[kind] = float(line.split()[1])
    return found["count"], found["sum"]


def operator_calls(audit: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The operator's calls in the emulator's audit (kopf's and its own client's), counted
    by ``verb resource[/subresource]``, most frequent first."""
    counts: dict[str, int] = {}
    for call in audit:
        if not str(call.get("userAgent", "")).startswith(("kopf/", "modelrollout/")):
            continue
        what = call.get("resource", "")
        if call.get("subresource"):
            what += "/" + call["subresource"]
        key = f"{call.get('verb')} {what}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def wait_until(what: str, probe: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Figures:
    n: int
    lags: list[float] = field(default_factory=list)
    decided: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    steps: int = 0
    rss_mb: float = 0.0
    api_cpu_seconds: float = 0.0
    seconds: float = 0.0
    finished: int = 0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: Reconcile passes while the canaries ran, and their summed duration.
    passes: float = 0.0
    pass_seconds: float = 0.0
    #: The operator's API calls while the canaries ran, by verb and resource.
    calls: dict[str, int] = field(default_factory=dict)
    #: The emulator's audit ring overflowed: the counts cover its last calls only.
    audit_full: bool = False

    @property
    def cpu_ms_per_step(self) -> float:
        return 1000 * self.cpu_seconds / self.steps if self.steps else math.nan

    def line(self) -> str:
        return (
            f"n={self.n} finished={self.finished} took_s={self.seconds:.1f} "
            f"lag_p50_s={percentile(self.lags, 50):.3f} lag_p99_s={percentile(self.lags, 99):.3f} "
            f"lag_max_s={max(self.lags, default=math.nan):.3f} "
            f"decision_lag_p50_s={percentile(self.decided, 50):.3f} "
            f"decision_lag_p99_s={percentile(self.decided, 99):.3f} pauses={len(self.lags)} "
            f"cpu_ms_per_step={self.cpu_ms_per_step:.1f} operator_cpu_s={self.cpu_seconds:.1f} "
            f"kube_api_cpu_s={self.api_cpu_seconds:.1f} rss_mb={self.rss_mb:.0f} "
            f"load={self.load[0]:.2f},{self.load[1]:.2f},{self.load[2]:.2f}"
        )


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> Figures:
    figures = Figures(n)
    crds = sorted((REPO / "crds").glob("*.modelrollout.io.yaml"))
    crds += sorted((OPERATOR_DIR / "modelrollout" / "sandbox" / "crds").glob("*.yaml"))
    metrics = workdir / "metrics.json"
    metrics.write_text(json.dumps({QUERY: 0.999}))
    with KubeApiProcess.start(workdir, crds=crds, history_limit=max(2000, 40 * n)) as kube:
        kserve = Child(
            "kserve",
            [sys.executable, "-m", "modelrollout.sandbox.kserve", "--kubeconfig",
             str(kube.kubeconfig)],
            workdir,
            {},
        )  # fmt: skip
        command = [sys.executable, "-m", "modelrollout.cli", "run"]
        profile = None
        if args.profile is not None:
            profile = args.profile.with_name(f"{args.profile.stem}-n{n}{args.profile.suffix}")
            session = str(profile.with_suffix(".pyisession"))
            command = [sys.executable, "-m", "pyinstrument", "-r", "session", "-o", session,
                       "-m", "modelrollout.cli", "run"]  # fmt: skip
        env = {
            "MODELROLLOUT_METRICS_ADDRESS": f"127.0.0.1:{args.metrics_port}",
            "KUBECONFIG": str(kube.kubeconfig),
            "MODELROLLOUT_REGISTRY": "static:s3://models",
            "MODELROLLOUT_METRICS": f"static:{metrics}",
            "MODELROLLOUT_LOG_LEVEL": "WARNING",
        }
        if args.timer_seconds is not None:
            env["MODELROLLOUT_TIMER_SECONDS"] = str(args.timer_seconds)
        operator = Child("operator", command, workdir, env)
        watcher = Watcher(kube.url)
        try:
            _drive(n, args, kube, operator, watcher, figures)
        finally:
            watcher.stop()
            operator.stop(signal.SIGINT if profile else signal.SIGTERM, timeout=120)
            kserve.stop()
        if profile is not None:
            _render(profile)
    return figures


def _render(profile: Path) -> None:
    """The saved pyinstrument session as HTML and as text (``.txt``, for reports)."""
    session = profile.with_suffix(".pyisession")
    for renderer, out in (("html", profile), ("text", profile.with_suffix(".txt"))):
        subprocess.run(
            [sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", renderer,
             "-o", str(out)],
            check=True, timeout=300,
        )  # fmt: skip
    print(f"  profile: {profile} ({profile.with_suffix('.txt').name}, {session.name})")


def _drive(
    n: int,
    args: argparse.Namespace,
    kube: KubeApiProcess,
    operator: Child,
    watcher: Watcher,
    figures: Figures,
) -> None:
    api_client = config.new_client_from_config(str(kube.kubeconfig))
    api_client.rest_client.pool_manager.connection_pool_kw["maxsize"] = 8
    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    listed = custom.list_namespaced_custom_object(
        api.GROUP, api.VERSION, NAMESPACE, api.ROLLOUT_PLURAL
    )
    watcher.start(listed["metadata"]["resourceVersion"])
    names = [f"r{i:04d}" for i in range(n)]

    def create(index: int) -> None:
        custom.create_namespaced_custom_object(
            api.GROUP, api.VERSION, NAMESPACE, api.ROLLOUT_PLURAL,
            rollout_body(names[index], 1, pause_of(index, n, args.pause)),
        )  # fmt: skip

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(n)))
    wait_until(
        f"{n} first deployments", lambda: watcher.count("Succeeded", "1") == n, 120 + 0.5 * n
    )
    print(f"  n={n}: first deployments took {time.monotonic() - started:.1f}s", flush=True)

    kube.clear_audit()
    passes_before = pass_counts(args.metrics_port)
    cpu_before = cpu_seconds(operator.pid)
    api_cpu_before = cpu_seconds(kube.process.pid)
    started = time.monotonic()

    def start_canary(index: int) -> None:
        name = names[index]
        delay = started + args.spread * index / n - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = {"spec": {"model": {"uri": f"models:/{name}/2"}}}
        custom.patch_namespaced_custom_object(
            api.GROUP, api.VERSION, NAMESPACE, api.ROLLOUT_PLURAL, name, body
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(start_canary, range(n)))
    budget = args.spread + 8 * args.pause + 60 + 0.3 * n
    try:
        wait_until(f"{n} promotions", lambda: watcher.count("Succeeded", "2") == n, budget)
    except TimeoutError as error:
        print(f"  {error}", flush=True)
    figures.seconds = time.monotonic() - started
    figures.cpu_seconds = cpu_seconds(operator.pid) - cpu_before
    figures.api_cpu_seconds = cpu_seconds(kube.process.pid) - api_cpu_before
    figures.rss_mb = peak_rss_mb(operator.pid)
    figures.load = os.getloadavg()
    figures.finished = watcher.count("Succeeded", "2")
    audit = kube.audit()
    figures.calls = operator_calls(audit)
    figures.audit_full = len(audit) >= kube.stats().get("auditLimit", math.inf)
    passes_after = pass_counts(args.metrics_port)
    figures.passes = passes_after[0] - passes_before[0]
    figures.pass_seconds = passes_after[1] - passes_before[1]
    figures.steps = STEPS_PER_ROLLOUT * figures.finished
    with watcher.lock:
        timelines = {name: list(seen) for name, seen in watcher.timelines.items()}
    for index, name in enumerate(names):
        pause = pause_of(index, n, args.pause)
        observed, decided = pause_lags(timelines.get(name, []), pause_indices(), pause)
        figures.lags += observed
        figures.decided += decided


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="100,300,1000", help="comma-separated N")
    parser.add_argument("--pause", type=float, default=60.0, help="each pause step, seconds")
    parser.add_argument("--spread", type=float, help="seconds over which canaries start")
    parser.add_argument("--timer-seconds", type=float, help="MODELROLLOUT_TIMER_SECONDS")
    parser.add_argument("--profile", type=Path, help="pyinstrument HTML, one file per size")
    parser.add_argument("--metrics-port", type=int, default=18590, help="operator /metrics")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args(argv)
    args.spread = args.pause if args.spread is None else args.spread
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1:
        parser.error("--sizes: positive integers, e.g. 100,300,1000")
    results: list[Figures] = []
    for n in sizes:
        workdir = Path(tempfile.mkdtemp(prefix=f"modelrollout-scale-{n}-"))
        print(
            f"n={n}: {workdir} pause={args.pause:g}s spread={args.spread:g}s "
            f"load={os.getloadavg()[0]:.2f}",
            flush=True,
        )
        figures = run_size(n, args, workdir)
        print(figures.line(), flush=True)
        steps = max(1, figures.steps)
        print(
            f"  passes per step: {figures.passes / steps:.2f}, mean pass "
            f"{1000 * figures.pass_seconds / max(1.0, figures.passes):.0f} ms",
            flush=True,
        )
        calls = ", ".join(f"{k} {v / steps:.2f}" for k, v in figures.calls.items())
        full = " (audit ring full: an undercount)" if figures.audit_full else ""
        print(f"  operator API calls per step{full}: {calls}", flush=True)
        results.append(figures)
        if not args.keep and figures.finished == n:
            shutil.rmtree(workdir, ignore_errors=True)
    last = results[-1]
    print(
        f"RESULT n={last.n} lag_p99_s={percentile(last.lags, 99):.3f} "
        f"rss_mb={last.rss_mb:.0f} cpu_ms_per_step={last.cpu_ms_per_step:.1f}"
    )
    return 0 if last.finished == last.n else 1


if __name__ == "__main__":
    sys.exit(main())
