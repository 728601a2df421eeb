"""``modelrollout demo``: a good model promoted and a bad one rolled back, all on this machine.

The demo brings a sandbox up in a run directory of its own (real kube-api emulator, MLflow,
KServe model servers behind the router, Prometheus scraping every second, a bare git
repository, the operator and Locust), then does what a platform engineer does:

1. trains and registers, on scikit-learn's diabetes dataset, v1 (a baseline on two features),
   v2 (better: all ten) and v3 (as good offline, but 30 % of its predictions fail when served);
2. applies the MetricTemplates and a git-sourced ModelRollout and commits v1: it becomes stable;
3. sends load (Locust) and commits v2: canary at 25 %, then 50 %, judged by the sequential
   judge (errors, latency) and the drift judge, promoted; MLflow's ``champion`` alias moves;
4. commits v3: its canary fails the error judge and the operator rolls it back on its own.

A live view shows weights, verdicts and evidence while it runs (plain lines when the output is
not a terminal); it ends with a summary table and exits 0 only if v2 was promoted and v3 rolled
back. The sandbox is brought down at the end unless ``--keep``; its logs stay in the run dir.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from modelrollout.sandbox import up as sandbox_up
from modelrollout.sandbox.up import SandboxError

NAMESPACE = "demo"
ISVC = "diabetes"
MODEL = "diabetes"
MANIFEST = "models/diabetes.yaml"
DEFAULT_RUN_DIR = Path(".modelrollout-demo")
STABLE_SECONDS = 120.0
PROMOTE_SECONDS = 150.0
ROLLBACK_SECONDS = 120.0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="the local demo: a good model promoted, a bad one rolled back",
        description="Bring a sandbox up, train and register three models, commit each and "
        "watch the operator promote the good one and roll back the bad one.",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=DEFAULT_RUN_DIR,
        help="where each run gets a folder of its own (data and logs)",
    )
    parser.add_argument("--base-port", type=int, default=18400, help="first sandbox port")
    parser.add_argument("--rps", type=float, default=60.0, help="predictions a second (Locust)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up at the end")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for the summary table
        console = Console(width=max(console.width, 140))
    run_dir = (args.run_dir / datetime.now().strftime("run-%Y%m%d-%H%M%S")).resolve()
    try:
        return Demo(console, run_dir, args.base_port, args.rps, keep=args.keep).run()
    except (SandboxError, TimeoutError) as error:
        errors = Console(stderr=True, width=console.width)
        errors.print(f"modelrollout demo: {error}", style="bold red", highlight=False)
        errors.print(f"data and logs: {run_dir}", highlight=False)
        return 1


@dataclass
class Outcome:
    label: str
    name: str
    version: str
    description: str
    rmse: float
    expected: str
    outcome: str = "-"
    reason: str = ""
    seconds: float = 0.0
    canary_requests: float = 0.0


@dataclass
class Snapshot:
    """What the live view shows: the rollout's status and its latest events."""

    status: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    title: str = ""


class Demo:
    def __init__(
        self, console: Any, run_dir: Path, base_port: int, rps: float, *, keep: bool
    ) -> None:
        self.console = console
        self.run_dir = run_dir
        self.base_port = base_port
        self.rps = rps
        self.keep = keep

    def run(self) -> int:
        began = time.monotonic()
        self.console.rule("[bold]modelrollout demo")
        self.console.print(f"run directory: {self.run_dir}")
        with self._sandbox() as sandbox:
            outcomes = self._story(sandbox)
        self._summary(outcomes, time.monotonic() - began)
        promoted, rolled_back = outcomes[1].outcome == "Promoted", outcomes[2].outcome
        ok = promoted and rolled_back == "RolledBack"
        verdict = "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"
        self.console.print(
            f"{verdict}: v2 {'promoted' if promoted else 'NOT promoted'}, "
            f"v3 {'rolled back' if rolled_back == 'RolledBack' else 'NOT rolled back'} "
            f"in {time.monotonic() - began:.0f} s"
        )
        return 0 if ok else 1

    @contextlib.contextmanager
    def _sandbox(self) -> Iterator[Any]:
        from modelrollout.sandbox.scenario import Sandbox

        self.console.print("[bold]1. sandbox up[/] (127.0.0.1 only)")
        try:
            sandbox_up.up(self.run_dir, self.base_port, out=lambda line: self._note(line))
            sandbox = Sandbox(self.run_dir)
            try:
                yield sandbox
            finally:
                sandbox.load({})
                sandbox.close()
        finally:
            if self.keep:
                self.console.print(
                    f"sandbox left up; stop it with: modelrollout sandbox down --run-dir "
                    f"{self.run_dir}"
                )
            else:
                sandbox_up.down(self.run_dir, out=lambda line: self._note(line))

    def _note(self, text: str) -> None:
        for line in text.splitlines():
            self.console.print(f"   {line}", style="dim", highlight=False)

    # ---------------------------------------------------------------- the story

    def _story(self, sandbox: Any) -> list[Outcome]:
        from modelrollout.sandbox import models, scenario

        self.console.print("[bold]2. train and register v1, v2, v3[/] (MLflow)")
        quiet = io.StringIO()  # MLflow's own chatter: run links, "Created version", INFO logs
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), _quiet("mlflow"):
            found = models.register(
                sandbox.urls["mlflow"], MODEL, [models.BASELINE, models.BETTER, models.ERRORS]
            )
        expected = ("Initialized", "Promoted", "RolledBack")
        outcomes = [
            Outcome(f"v{i + 1}", r.label, r.version, r.description, r.rmse, e)
            for i, (r, e) in enumerate(zip(found, expected, strict=True))
        ]
        for o in outcomes:
            self._note(f"{o.label}: {MODEL} version {o.version}, holdout RMSE {o.rmse:.1f}, "
                       f"{o.description}")  # fmt: skip

        self.console.print("[bold]3. commit v1 and apply the ModelRollout[/]")
        sandbox.namespace(NAMESPACE)
        sandbox.apply_templates(NAMESPACE)
        first = outcomes[0]
        commit = sandbox.commit_manifest(MANIFEST, _uri(first), "v1: the baseline")
        self._note(f"committed {MANIFEST} ({commit[:10]}): modelUri {_uri(first)}")
        sandbox.apply_rollout(
            NAMESPACE, ISVC, scenario.canary_spec(sandbox.state["gitUrl"], MANIFEST, ISVC)
        )
        self._watch(sandbox, first, "v1 becomes stable", STABLE_SECONDS)
        sandbox.load({(NAMESPACE, ISVC): self.rps})
        self._note(f"Locust: {self.rps:g} predictions a second to {NAMESPACE}/{ISVC}")

        self.console.print("[bold]4. commit v2[/] (the better model)")
        sandbox.commit_manifest(MANIFEST, _uri(outcomes[1]), "v2: all ten features")
        self._watch(sandbox, outcomes[1], "v2: canary analysed, then promoted", PROMOTE_SECONDS)
        self._champion(sandbox)

        self.console.print("[bold]5. commit v3[/] (fails 30 % of predictions when served)")
        sandbox.commit_manifest(MANIFEST, _uri(outcomes[2]), "v3: retrained")
        self._watch(sandbox, outcomes[2], "v3: canary analysed, rolled back", ROLLBACK_SECONDS)
        self._champion(sandbox)
        return outcomes

    def _champion(self, sandbox: Any) -> None:
        from mlflow import MlflowClient

        version = MlflowClient(sandbox.urls["mlflow"]).get_model_version_by_alias(MODEL, "champion")
        self._note(f"MLflow: {MODEL}@champion is version {version.version}")

    def _watch(self, sandbox: Any, outcome: Outcome, title: str, timeout: float) -> None:
        """Follow the rollout until ``outcome``'s version is stable or was rolled back."""
        started = time.monotonic()
        served_before = sandbox.served(NAMESPACE)

        def snapshot() -> Snapshot:
            status = sandbox.status(NAMESPACE, ISVC)
            events = sandbox.events(NAMESPACE, ISVC)[-6:]
            return Snapshot(status, events, time.monotonic() - started, title)

        def finished(found: Snapshot) -> bool:
            return _result(found.status, outcome.version) is not None

        found = self._follow(snapshot, finished, timeout)
        result = _result(found.status, outcome.version)
        outcome.seconds = found.elapsed
        if result is None:
            outcome.outcome = "Timeout"
            outcome.reason = f"not done in {timeout:.0f} s (phase {found.status.get('phase')})"
            return
        outcome.outcome, outcome.reason = result
        served = sandbox.served(NAMESPACE)
        canary = {r: n - served_before.get(r, 0.0) for r, n in served.items()}
        outcome.canary_requests = sum(n for r, n in canary.items() if r not in served_before)

    def _follow(
        self, snapshot: Callable[[], Snapshot], finished: Callable[[Snapshot], bool], timeout: float
    ) -> Snapshot:
        deadline = time.monotonic() + timeout
        found = snapshot()
        if self.console.is_terminal:
            from rich.live import Live

            with Live(render(found), console=self.console, refresh_per_second=4) as live:
                while not finished(found) and time.monotonic() < deadline:
                    time.sleep(0.25)
                    found = snapshot()
                    live.update(render(found))
            return found
        seen: set[str] = set()
        changes(found, seen)  # what was there before this step is not news
        while True:
            for line in changes(found, seen):
                self.console.print(f"   {found.elapsed:5.1f}s  {line}", highlight=False)
            if finished(found) or time.monotonic() >= deadline:
                return found
            time.sleep(0.25)
            found = snapshot()

    # ---------------------------------------------------------------- the end

    def _summary(self, outcomes: list[Outcome], seconds: float) -> None:
        from rich.table import Table

        table = Table(title=f"modelrollout demo: summary ({seconds:.0f} s)")
        for column in ("model", "MLflow version", "holdout RMSE", "outcome", "expected",
                       "took", "canary requests"):  # fmt: skip
            table.add_column(column)
        for o in outcomes:
            style = "green" if o.outcome == o.expected else "red"
            table.add_row(
                f"{o.label} {o.name}", o.version, f"{o.rmse:.1f}", f"[{style}]{o.outcome}[/]",
                o.expected, f"{o.seconds:.0f} s",
                f"{o.canary_requests:.0f}" if o.label != "v1" else "-",
            )  # fmt: skip
        self.console.print(table)
        for o in outcomes:
            self.console.print(f"{o.label} {o.outcome}: {o.reason}", highlight=False)


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    found = logging.getLogger(logger)
    level = found.level
    found.setLevel(logging.WARNING)
    try:
        yield
    finally:
        found.setLevel(level)


def _uri(outcome: Outcome) -> str:
    return f"models:/{MODEL}/{outcome.version}"


def _result(status: dict[str, Any], version: str) -> tuple[str, str] | None:
    """(outcome, reason) once ``version`` was settled: stable, or rolled back."""
    stable = status.get("stable") or {}
    phase = status.get("phase")
    if phase == "Succeeded" and stable.get("version") == version:
        last = (status.get("history") or [{}])[-1]
        return str(last.get("outcome", "Promoted")), str(last.get("message", ""))
    if phase == "Failed" and not status.get("canary"):
        for entry in reversed(status.get("history") or []):
            if (entry.get("model") or {}).get("version") == version:
                return str(entry.get("outcome")), str(entry.get("message", ""))
    return None


# -------------------------------------------------------------------- rendering


def render(found: Snapshot) -> Any:
    """The live view of one snapshot (a rich renderable)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    status = found.status
    stable = status.get("stable") or {}
    canary = status.get("canary") or {}
    weight = int(status.get("canaryWeight") or 0)
    head = Table.grid(padding=(0, 2))
    phase = f"[bold]{status.get('phase', '-')}[/]"
    head.add_row("phase", phase, "elapsed", f"{found.elapsed:.0f} s")
    head.add_row("stable", _version(stable), "canary", _version(canary))
    step = status.get("currentStepIndex")
    head.add_row("step", "-" if step is None else str(step), "canary weight", f"{weight} %")
    bar = ProgressBar(total=100, completed=weight, width=50)
    metrics = Table("metric", "verdict", "value", "evidence", expand=True)
    for metric in (status.get("analysis") or {}).get("metrics", []):
        verdict = metric.get("verdict") or "-"
        colour = {"PASS": "green", "FAIL": "red", "ERROR": "red"}.get(verdict, "yellow")
        value = metric.get("value")
        metrics.add_row(
            metric["name"], f"[{colour}]{verdict}[/]",
            "-" if value is None else f"{value:.3g}", _evidence(metric),
        )  # fmt: skip
    events = Table("event", "message", expand=True, show_header=False)
    for event in found.events:
        colour = "red" if event["type"] == "Warning" else "cyan"
        events.add_row(f"[{colour}]{event['reason']}[/]", event["message"])
    message = status.get("message") or ""
    return Panel(
        Group(head, bar, metrics, events, message),
        title=f"{NAMESPACE}/{ISVC}: {found.title}",
    )


def changes(found: Snapshot, seen: set[str]) -> list[str]:
    """Lines for what is new in ``found`` (the view without a terminal)."""
    status = found.status
    lines = []
    weight = f"phase {status.get('phase', '-')}, canary weight {status.get('canaryWeight', 0)} %"
    for metric in (status.get("analysis") or {}).get("metrics", []):
        verdict = f"{metric['name']}: {metric.get('verdict')}"
        if metric.get("verdict") and verdict not in seen:
            seen.add(verdict)
            lines.append(f"{verdict} ({_evidence(metric)})")
    for event in found.events:
        key = f"event {event['reason']} {event['message']}"
        if key not in seen:
            seen.add(key)
            lines.append(f"{event['type']} {event['reason']}: {event['message']}")
    if weight not in seen:
        seen.add(weight)
        lines.insert(0, weight)
    return lines


def _version(ref: dict[str, Any]) -> str:
    return f"v{ref['version']}" if ref.get("version") else "-"


def _evidence(metric: dict[str, Any]) -> str:
    evidence = metric.get("evidence") or {}
    keys = ("canaryTotal", "canaryBad", "stableTotal", "stableBad", "eValueHarm",
            "eValueWithin", "value", "canarySamples")  # fmt: skip
    shown = [f"{key}={evidence[key]}" for key in keys if key in evidence]
    return ", ".join(shown) or (metric.get("message") or "")[:80]
