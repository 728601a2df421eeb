"""The commands for people: ``status``, ``history``, ``promote``, ``abort``, ``retry``, ``pause``
and ``resume`` against the API server, and ``lint`` offline.

Kube access is kubectl's: ``--kubeconfig``, else ``KUBECONFIG`` (a list of files), else
``~/.kube/config``; ``--context``, else the current context; ``-n``, else the context's
namespace, else ``default``. ``promote``, ``abort`` and ``retry`` set the annotation
``modelrollout.io/action`` to ``<action>:<nonce>``: the operator acts on each value once and
remembers it in ``status.lastAction``, so a fresh nonce lets the same action be given again.
``pause`` and ``resume`` set ``spec.paused`` with a merge patch.

``status --watch`` redraws when what it shows changes, until Ctrl-C or ``--timeout``.
Tables use rich when it is installed (the ``cli`` extra) and plain aligned text otherwise or
with ``--plain``. Every error exits non-zero with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from modelrollout import api, durations, serde, steps, templates
from modelrollout.clock import Clock, SystemClock, parse_time

KUBE_COMMANDS = ("status", "history", "promote", "abort", "retry", "pause", "resume")
COMMANDS = (*KUBE_COMMANDS, "lint")
#: The CRDs ``lint`` checks against when no ``--crd`` is given: the repository's ``crds/``.
DEFAULT_CRDS = Path(__file__).resolve().parents[2] / "crds"
_CONTENT_MERGE_PATCH = "application/merge-patch+json"
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class CtlError(Exception):
    """What went wrong, as the one line a person reads."""


# ---------------------------------------------------------------- arguments


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kube = argparse.ArgumentParser(add_help=False)
    kube.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    kube.add_argument("--context", help="kubeconfig context (default: the current one)")
    kube.add_argument(
        "-n", "--namespace", help="namespace of the rollout (default: the context's namespace)"
    )
    kube.add_argument(
        "--request-timeout", default="10s", metavar="DURATION", help="per API call (default 10s)"
    )
    look = argparse.ArgumentParser(add_help=False)
    look.add_argument("--plain", action="store_true", help="plain text, even with rich installed")

    status = commands.add_parser(
        "status", parents=[kube, look], help="phase, weights, step, verdicts, conditions, events"
    )
    status.add_argument("name", metavar="NAME")
    status.add_argument("-w", "--watch", action="store_true", help="redraw until Ctrl-C")
    status.add_argument(
        "--timeout", metavar="DURATION", help="with --watch: stop after this long (e.g. 5m)"
    )
    status.add_argument(
        "--interval", default="2s", metavar="DURATION", help="with --watch: poll period (2s)"
    )
    status.add_argument("--events", type=int, default=5, metavar="N", help="last N events (5)")
    history = commands.add_parser(
        "history", parents=[kube, look], help="the rollout's past models and how each ended"
    )
    history.add_argument("name", metavar="NAME")
    promote = commands.add_parser(
        "promote", parents=[kube], help="end a pause or an analysis and go on to the next step"
    )
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("--full", action="store_true", help="skip the remaining steps: 100%%")
    for name, text in (
        ("abort", "roll back now: traffic to stable, the canary counted as aborted"),
        ("retry", "start again a version that failed or was aborted"),
        ("pause", "hold the rollout where it stands (spec.paused: true)"),
        ("resume", "let a paused rollout go on (spec.paused: false)"),
    ):
        commands.add_parser(name, parents=[kube], help=text).add_argument("name", metavar="NAME")
    lint = commands.add_parser(
        "lint",
        help="check ModelRollout/MetricTemplate YAML or a git manifest offline",
        description="Check files as the API server and the operator would, offline: the CRD's "
        "schema and CEL rules, then the operator's own spec checks; or a git model manifest.",
    )
    lint.add_argument("files", nargs="+", metavar="FILE", help="a YAML file, or - for stdin")
    lint.add_argument(
        "--crd",
        action="append",
        type=Path,
        metavar="FILE",
        help=f"CRD file to check against (repeatable; default: {DEFAULT_CRDS}/*.yaml)",
    )


def run(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Carry out ``args.command``; 0 on success, 1 with one line on ``err`` otherwise."""
    out = out or sys.stdout
    err = err or sys.stderr
    clock = clock or SystemClock()
    try:
        if args.command == "lint":
            return _lint_command(args, out, err)
        cluster = connect(args.kubeconfig, args.context, args.namespace, args.request_timeout)
        if args.command == "status":
            return _status_command(args, cluster, out, clock, sleep)
        if args.command == "history":
            _print(out, history_view(cluster.get(args.name)), plain=args.plain)
            return 0
        if args.command in ("pause", "resume"):
            paused = args.command == "pause"
            body = cluster.patch(args.name, {"spec": {"paused": paused}})
            print(f"{_what(body)}: {'paused' if paused else 'resumed'}", file=out)
            return 0
        action = api.Action.PROMOTE_FULL if getattr(args, "full", False) else args.command
        value = f"{api.Action(action).value}:{secrets.token_hex(4)}"
        body = cluster.patch(
            args.name, {"metadata": {"annotations": {api.ACTION_ANNOTATION: value}}}
        )
        phase = (body.get("status") or {}).get("phase", api.Phase.PENDING.value)
        print(
            f"{_what(body)}: {action} requested ({api.ACTION_ANNOTATION}={value}, phase {phase})",
            file=out,
        )
        return 0
    except CtlError as error:
        print(f"error: {_one_line(str(error))}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug or a server answer we cannot read: still one line
        print(f"error: unexpected {type(error).__name__}: {_one_line(str(error))}", file=err)
        return 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _what(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"modelrollout {meta.get('namespace', '')}/{meta.get('name', '')}"


def _seconds(text: str, option: str) -> float:
    try:
        return durations.parse(text)
    except ValueError as error:
        raise CtlError(f"{option}: {error}") from None


# ---------------------------------------------------------------- the API server


@dataclass
class Cluster:
    """One namespace of one API server, reached with kubeconfig credentials."""

    custom: Any  # kubernetes.client.CustomObjectsApi
    core: Any  # kubernetes.client.CoreV1Api
    namespace: str
    server: str
    timeout: float

    def get(self, name: str) -> dict[str, Any]:
        return self._call(
            name,
            self.custom.get_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.ROLLOUT_PLURAL,
            name,
        )

    def patch(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(
            name,
            self.custom.patch_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.ROLLOUT_PLURAL,
            name,
            body,
            _content_type=_CONTENT_MERGE_PATCH,
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind={api.ROLLOUT_KIND},involvedObject.name={name}"
        found = self._call(
            name,
            self.core.list_namespaced_event,
            self.namespace,
            field_selector=selector,
            _preload_content=False,
        )
        items: list[dict[str, Any]] = found.get("items") or []
        return items

    def _call(self, name: str, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        import json

        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            result = method(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as error:
            raise CtlError(self._api_problem(name, error)) from None
        except (HTTPError, OSError) as error:
            reason = str(getattr(error, "reason", None) or error).rsplit(": ", 1)[-1]
            raise CtlError(f"cannot reach the API server at {self.server}: {reason}") from None
        if hasattr(result, "data"):  # an unparsed response
            parsed: dict[str, Any] = json.loads(result.data)
            return parsed
        return dict(result)

    def _api_problem(self, name: str, error: Any) -> str:
        import json

        try:
            body = json.loads(error.body or "{}")
        except ValueError:
            body = {}
        details = body.get("details") or {}
        if error.status == 404 and details.get("name") == name:
            return f"modelrollout {name!r} not found in namespace {self.namespace!r}"
        if error.status == 404:
            return (
                f"the API server at {self.server} serves no {api.ROLLOUT_PLURAL}."
                f"{api.GROUP}/{api.VERSION}: are the CRDs installed?"
            )
        message = body.get("message") or error.reason or "no message"
        return f"the API server said {error.status} {body.get('reason') or ''}: {message}"


def connect(
    kubeconfig: str | None, context: str | None, namespace: str | None, timeout: str = "10s"
) -> Cluster:
    """A :class:`Cluster` from kubeconfig, resolved as kubectl resolves it."""
    from kubernetes import client, config

    source = "--kubeconfig" if kubeconfig else "KUBECONFIG" if os.environ.get("KUBECONFIG") else ""
    path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    files = [str(Path(p).expanduser()) for p in path.split(os.pathsep) if p]
    if not any(Path(f).is_file() for f in files):
        where = f"{source} names {path}" if source else "KUBECONFIG is unset"
        raise CtlError(
            f"no kubeconfig: {where} and {'it does' if source else '~/.kube/config does'} not "
            "exist; set KUBECONFIG or pass --kubeconfig"
        )
    joined = os.pathsep.join(files)
    try:
        contexts, current = _contexts(f for f in files if Path(f).is_file())
        wanted = context or current
        if wanted is None:
            raise CtlError("the kubeconfig sets no current-context: pass --context")
        if wanted not in contexts:
            listed = ", ".join(contexts) or "none"
            raise CtlError(f"context {wanted!r} is not in the kubeconfig (contexts: {listed})")
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=joined,
            context=wanted,
            client_configuration=configuration,
            persist_config=False,
        )
    except (config.ConfigException, yaml.YAMLError, OSError, AttributeError, TypeError) as error:
        # Messages name files, keys and YAML positions, never credential values.
        raise CtlError(f"cannot use the kubeconfig {path}: {_short(error)}") from None
    configuration.retries = 0  # a person is waiting: no silent retries against a dead server
    api_client = client.ApiClient(configuration)
    return Cluster(
        custom=client.CustomObjectsApi(api_client),
        core=client.CoreV1Api(api_client),
        namespace=namespace or contexts[wanted].get("namespace") or "default",
        server=configuration.host,
        timeout=_seconds(timeout, "--request-timeout"),
    )


def _contexts(files: Iterable[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Context name -> context, and the current context, merged as kubectl merges files: the
    first file to name a context (or set current-context) wins."""
    contexts: dict[str, dict[str, Any]] = {}
    current = None
    for name in files:
        document = yaml.safe_load(Path(name).read_text(encoding="utf-8")) or {}
        if not isinstance(document, dict):
            raise CtlError(f"cannot use the kubeconfig {name}: not a mapping")
        current = current or document.get("current-context") or None
        for entry in document.get("contexts") or ():
            contexts.setdefault(str(entry.get("name")), dict(entry.get("context") or {}))
    return contexts, current


# ---------------------------------------------------------------- views


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str = "none"


@dataclass(frozen=True)
class View:
    """What a command shows: a heading, facts (label, value) and tables."""

    heading: str
    facts: tuple[tuple[str, str], ...] = ()
    tables: tuple[Table, ...] = ()


def status_view(
    rollout: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    now: datetime,
    max_events: int = 5,
) -> View:
    meta = rollout.get("metadata") or {}
    spec = rollout.get("spec") or {}
    status = rollout.get("status") or {}
    phase = status.get("phase") or api.Phase.PENDING.value
    if spec.get("paused"):
        phase += " (spec.paused)"
    facts = [("Phase", phase)]
    if status.get("message"):
        facts.append(("Message", status["message"]))
    facts += [
        ("Stable", _model(status.get("stable"))),
        ("Canary", _model(status.get("canary"))),
        ("Weight", f"{status.get('canaryWeight', 0)}% canary"),
        ("Step", _step(spec, status.get("currentStepIndex"))),
    ]
    analysis = status.get("analysis") or {}
    if analysis:
        text = analysis.get("phase", "")
        facts.append(
            ("Analysis", f"{text}: {analysis['message']}" if analysis.get("message") else text)
        )
    action = (meta.get("annotations") or {}).get(api.ACTION_ANNOTATION)
    if action and action != status.get("lastAction"):
        facts.append(("Action", f"{action} (not acted on yet)"))
    elif status.get("lastAction"):
        facts.append(("Last action", status["lastAction"]))
    metrics = tuple(
        (
            m.get("name", ""),
            m.get("verdict") or "-",
            _number(m.get("value")),
            _counts(m),
            "; ".join(filter(None, [m.get("message"), _pairs(m.get("evidence") or {})])),
        )
        for m in analysis.get("metrics") or ()
    )
    conditions = tuple(
        (
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason", ""),
            _age(c.get("lastTransitionTime"), now),
            c.get("message", ""),
        )
        for c in status.get("conditions") or ()
    )
    recent = sorted(events, key=_event_time)[-max_events:] if max_events > 0 else []
    event_rows = tuple(
        (
            _age(_event_time(e) or None, now),
            e.get("type", ""),
            e.get("reason", ""),
            f"{e.get('message', '')}" + (f" (x{e['count']})" if (e.get("count") or 1) > 1 else ""),
        )
        for e in recent
    )
    return View(
        heading=f"ModelRollout {meta.get('namespace', '')}/{meta.get('name', '')}",
        facts=tuple(facts),
        tables=(
            Table("Metrics", ("NAME", "VERDICT", "VALUE", "CHECKS", "MESSAGE"), metrics),
            Table("Conditions", ("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"), conditions),
            Table("Events", ("AGE", "TYPE", "REASON", "MESSAGE"), event_rows),
        ),
    )


def history_view(rollout: Mapping[str, Any]) -> View:
    meta = rollout.get("metadata") or {}
    entries = (rollout.get("status") or {}).get("history") or ()
    rows = tuple(
        (
            str(i),
            _model(h.get("model")),
            h.get("outcome", ""),
            h.get("reason", ""),
            h.get("startedAt") or "-",
            _took(h.get("startedAt"), h.get("finishedAt")),
            h.get("message", ""),
        )
        for i, h in enumerate(entries, start=1)
    )
    columns = ("#", "MODEL", "OUTCOME", "REASON", "STARTED", "TOOK", "MESSAGE")
    return View(
        heading=f"ModelRollout {meta.get('namespace', '')}/{meta.get('name', '')}: history",
        tables=(Table("History", columns, rows, empty="no rollout has finished yet"),),
    )


def _model(ref: Mapping[str, Any] | None) -> str:
    if not ref:
        return "-"
    name, version = ref.get("name"), ref.get("version")
    text = f"{name} v{version}" if name and version else str(ref.get("uri", "?"))
    if name and version and ref.get("uri"):
        text += f" ({ref['uri']})"
    if ref.get("gitCommit"):
        text += f" commit {str(ref['gitCommit'])[:7]}"
    return text


def _step(spec: Mapping[str, Any], index: Any) -> str:
    listed = (spec.get("strategy") or {}).get("steps") or []
    if not isinstance(index, int) or not 0 <= index < len(listed):
        return "-"
    try:
        described = steps.describe(serde.from_json(api.Step, listed[index], "step"))
    except serde.SpecError:
        described = "?"
    return f"{index + 1} of {len(listed)}: {described}"


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _counts(metric: Mapping[str, Any]) -> str:
    parts = [
        f"{metric.get(key, 0)} {label}"
        for key, label in (
            ("successful", "pass"),
            ("failed", "fail"),
            ("inconclusive", "inconclusive"),
            ("error", "error"),
        )
        if metric.get(key)
    ]
    return ", ".join(parts) or "0"


def _pairs(evidence: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(evidence.items()))


def _event_time(event: Mapping[str, Any]) -> str:
    meta = event.get("metadata") or {}
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if event.get(key):
            return str(event[key])
    return str(meta.get("creationTimestamp") or "")


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    try:
        seconds = (now - parse_time(stamp)).total_seconds()
    except ValueError:
        return "?"
    return durations.format_seconds(max(0.0, seconds))


def _took(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return "-"
    try:
        return durations.format_seconds(
            (parse_time(finished) - parse_time(started)).total_seconds()
        )
    except ValueError:
        return "?"


def render_plain(view: View) -> str:
    lines = [view.heading]
    width = max((len(label) for label, _ in view.facts), default=0) + 1
    lines += [f"  {label + ':':<{width}} {value}" for label, value in view.facts]
    for table in view.tables:
        lines += ["", table.title]
        if not table.rows:
            lines.append(f"  {table.empty}")
            continue
        cells = [table.columns, *table.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
        for row in cells:
            padded = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)]
            lines.append("  " + "  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


_STYLES = {
    "PASS": "green",
    "FAIL": "bold red",
    "INCONCLUSIVE": "yellow",
    "ERROR": "red",
    "True": "green",
    "False": "red",
    "Succeeded": "green",
    "Promoted": "green",
    "Failed": "bold red",
    "RolledBack": "red",
    "Aborted": "yellow",
    "Warning": "yellow",
}


def render_rich(view: View) -> Any:
    """A rich renderable of ``view`` (rich is imported only here)."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    facts = RichTable.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for label, value in view.facts:
        facts.add_row(label, Text(value, style=_STYLES.get(value.split(" ", 1)[0], "")))
    parts: list[Any] = [Text(view.heading, style="bold"), facts]
    for table in view.tables:
        shown = RichTable(title=table.title, title_justify="left", expand=False)
        for column in table.columns:
            shown.add_column(column, overflow="fold")
        for row in table.rows:
            shown.add_row(*(Text(cell, style=_STYLES.get(cell, "")) for cell in row))
        if not table.rows:
            parts.append(Text(f"{table.title}: {table.empty}"))
        else:
            parts.append(shown)
    return Group(*parts)


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _print(out: TextIO, view: View, *, plain: bool) -> None:
    if plain or not _rich_available():
        out.write(render_plain(view))
        return
    from rich.console import Console

    Console(file=out, width=None if out.isatty() else 120).print(render_rich(view))


def _status_command(
    args: argparse.Namespace,
    cluster: Cluster,
    out: TextIO,
    clock: Clock,
    sleep: Callable[[float], None],
) -> int:
    def fetch() -> Snapshot:
        return Snapshot(cluster.get(args.name), cluster.events(args.name))

    def show(snapshot: Snapshot) -> None:
        view = status_view(snapshot.rollout, snapshot.events, clock.now(), args.events)
        if args.watch:
            # A terminal shows one view in place; a log gets each view after a rule.
            out.write("\x1b[H\x1b[2J" if out.isatty() else "---\n")
        _print(out, view, plain=args.plain)
        out.flush()

    if not args.watch:
        if args.timeout is not None:
            raise CtlError("--timeout needs --watch")
        show(fetch())
        return 0
    interval = _seconds(args.interval, "--interval")
    if interval <= 0:
        raise CtlError("--interval: must be longer than zero")
    limit = _seconds(args.timeout, "--timeout") if args.timeout is not None else None
    # In a terminal every poll redraws, so ages tick; a log gets a view only when it changed.
    watch(fetch, show, clock, sleep, interval, limit, every_poll=out.isatty())
    return 0


@dataclass(frozen=True)
class Snapshot:
    """What one poll read: the rollout and its events."""

    rollout: dict[str, Any]
    events: list[dict[str, Any]]


def watch(
    fetch: Callable[[], Snapshot],
    show: Callable[[Snapshot], None],
    clock: Clock,
    sleep: Callable[[float], None],
    interval: float,
    limit: float | None,
    *,
    every_poll: bool = False,
) -> int:
    """Poll ``fetch()`` every ``interval`` seconds and ``show`` what changed (or, with
    ``every_poll``, every poll) until ``limit`` seconds have passed, or forever; Ctrl-C ends it
    quietly. Returns how many times it showed."""
    started = clock.now()
    last: Snapshot | None = None
    shown = 0
    try:
        while True:
            snapshot = fetch()
            if every_poll or snapshot != last:
                show(snapshot)
                shown += 1
                last = snapshot
            elapsed = (clock.now() - started).total_seconds()
            if limit is not None and elapsed >= limit:
                return shown
            sleep(interval if limit is None else min(interval, limit - elapsed))
    except KeyboardInterrupt:
        return shown


# ---------------------------------------------------------------- lint


@dataclass(frozen=True)
class Finding:
    """One problem: where (a field path, or "" for the whole file), what, and why it matters."""

    path: str
    message: str
    explanation: str = ""


def load_schemas(files: Iterable[Path]) -> dict[str, Mapping[str, Any]]:
    """``kind`` -> the storage version's ``openAPIV3Schema`` of each CRD in ``files``."""
    found: dict[str, Mapping[str, Any]] = {}
    for path in files:
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as error:
            raise CtlError(f"cannot read the CRD {path}: {_short(error)}") from None
        for crd in documents:
            if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
                continue
            for version in crd["spec"]["versions"]:
                if version.get("storage"):
                    found[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    if not found:
        names = ", ".join(str(p) for p in files) or "nothing"
        raise CtlError(f"no CRD found in {names}; pass --crd FILE")
    return found


def lint_text(raw: bytes, schemas: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[Finding]]:
    """What ``raw`` is ("ModelRollout fraud", "git manifest") and everything wrong with it."""
    from modelrollout.gitsource import manifest
    from modelrollout.gitsource.base import ManifestError

    try:
        documents = [d for d in yaml.safe_load_all(raw.decode("utf-8")) if d is not None]
    except UnicodeDecodeError as error:
        return "file", [Finding("", f"not UTF-8 (byte {error.start})")]
    except yaml.YAMLError as error:
        return "file", [Finding("", f"not valid YAML: {_short(error)}")]
    if not documents:
        return "file", [Finding("", "empty: no YAML document")]
    if (
        len(documents) == 1
        and isinstance(documents[0], dict)
        and not ({"apiVersion", "kind"} & documents[0].keys())
    ):
        try:
            parsed = manifest.parse(raw)
        except ManifestError as error:
            return "git manifest", [Finding("", str(error), _MANIFEST_HELP)]
        return f"git manifest ({parsed.model_uri})", []
    labels, findings = [], []
    for index, document in enumerate(documents):
        label, found = lint_object(document, schemas)
        prefix = f"document {index + 1}: " if len(documents) > 1 else ""
        labels.append(label)
        findings += [Finding(f.path, prefix + f.message, f.explanation) for f in found]
    return ", ".join(labels), findings


_MANIFEST_HELP = (
    "a git manifest holds modelUri (models:/<name>/<version> or models:/<name>@<alias>) and "
    "optionally notes and approvedBy; see docs/manifest.md"
)


def lint_object(
    document: Any, schemas: Mapping[str, Mapping[str, Any]]
) -> tuple[str, list[Finding]]:
    """Check one object as the API server would (prune, defaults, schema, CEL), then, if it
    passes, as the operator would (typed API, spec checks, query templates)."""
    from modelrollout import schema as structural

    if not isinstance(document, dict):
        return "document", [Finding("", f"not a mapping but {type(document).__name__}")]
    kind = str(document.get("kind", ""))
    metadata = document.get("metadata")
    name = str(metadata.get("name", "")) if isinstance(metadata, dict) else ""
    label = f"{kind} {name}".strip()
    if kind not in schemas:
        known = " or ".join(sorted(schemas))
        return label, [Finding("kind", f"{kind!r} is not {known}", "lint checks our kinds only")]
    if document.get("apiVersion") != api.API_VERSION:
        given = document.get("apiVersion")
        return label, [Finding("apiVersion", f"must be {api.API_VERSION}, not {given!r}")]
    s = schemas[kind]
    findings = _metadata_findings(document.get("metadata"))
    pruned, dropped = structural.prune(s, document)
    findings += [
        Finding(
            path,
            f'unknown field "{path}"',
            "not in the CRD's schema: kubectl apply refuses it (strict field validation) and "
            "with --validate=false the API server drops it",
        )
        for path in dropped
    ]
    defaulted = structural.apply_defaults(s, pruned)
    findings += [
        Finding(e.path, e.message, _describe(s, e.path)) for e in structural.validate(s, defaulted)
    ]
    if findings:
        return label, findings
    if kind == api.ROLLOUT_KIND:
        return label, _rollout_findings(s, defaulted)
    return label, _template_findings(s, defaulted)


def _metadata_findings(metadata: Any) -> list[Finding]:
    if not isinstance(metadata, dict):
        return [Finding("metadata", "required: a mapping with at least name")]
    name = metadata.get("name")
    if not name:
        return [Finding("metadata.name", "Required value: name is required")]
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        return [
            Finding(
                "metadata.name",
                f"Invalid value: {name!r}",
                "a name is a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and "
                "'.', starting and ending with a letter or digit, at most 253 characters",
            )
        ]
    return []


def _rollout_findings(s: Mapping[str, Any], document: Mapping[str, Any]) -> list[Finding]:
    try:
        spec = api.read_spec(document.get("spec"))
    except serde.SpecError as error:
        return [Finding(error.path, error.detail, _describe(s, error.path))]
    findings = []
    for problem in steps.problems(spec):
        path, _, message = problem.partition(": ")
        findings.append(Finding(path, message, _describe(s, path)))
    if findings:
        return findings
    namespace = str((document.get("metadata") or {}).get("namespace") or "default")
    strategy = spec.strategy.analysis
    for i, metric in enumerate(strategy.metrics if strategy else ()):
        if metric.query is None or strategy is None:
            continue
        where = f"spec.strategy.analysis.metrics[{i}].query"
        try:
            variables = templates.variables(
                namespace=namespace,
                inference_service=spec.target.inference_service,
                stable_revision="stable-predictor-00001",
                canary_revision="canary-predictor-00002",
                interval=metric.interval or strategy.interval,
                since_canary_start_seconds=60.0,
                args=metric.args,
            )
            templates.render(metric.query, variables)
        except templates.TemplateError as error:
            findings.append(Finding(where, str(error), _describe(s, where)))
    return findings


def _template_findings(s: Mapping[str, Any], document: Mapping[str, Any]) -> list[Finding]:
    try:
        spec = api.read_template(document.get("spec"))
    except serde.SpecError as error:
        return [Finding(error.path, error.detail, _describe(s, error.path))]
    queries = {"spec.query": spec.query}
    if spec.counts is not None:
        for key in ("total", "bad", "buckets"):
            queries[f"spec.counts.{key}"] = getattr(spec.counts, key)
    findings = []
    for where, query in queries.items():
        if query is None:
            continue
        # Other names are the rollouts' metric args: any single token stands in for them.
        args = {
            m[1]: "arg"
            for m in templates.PLACEHOLDER.finditer(query)
            if m[1] not in templates.BUILTINS
        }
        try:
            variables = templates.variables(
                namespace="default",
                inference_service="model",
                stable_revision="model-predictor-00001",
                canary_revision="model-predictor-00002",
                interval="1m",
                since_canary_start_seconds=60.0,
                args=args,
            )
            templates.render(query, templates.for_arm(variables, templates.CANARY_REVISION))
        except templates.TemplateError as error:
            findings.append(Finding(where, str(error), _describe(s, where)))
    return findings


_PATH_STEP = re.compile(r"\.?([^.\[\]]+)|\[([^\]]*)\]")


def _describe(s: Mapping[str, Any], path: str) -> str:
    """The CRD's description of the field at ``path`` (at most 240 characters); none for the
    whole object, whose description says nothing about the error."""
    if not path:
        return ""
    node: Any = s
    for key, index in _PATH_STEP.findall(path):
        if not isinstance(node, Mapping):
            return ""
        if key:
            node = (node.get("properties") or {}).get(key) or (
                node.get("additionalProperties")
                if isinstance(node.get("additionalProperties"), Mapping)
                else None
            )
        elif index.isdigit():
            node = node.get("items")
        else:
            extra = node.get("additionalProperties")
            node = extra if isinstance(extra, Mapping) else None
        if node is None:
            return ""
    text = " ".join(str(node.get("description", "")).split()) if isinstance(node, Mapping) else ""
    return text if len(text) <= 240 else text[:237] + "..."


def _short(error: Exception) -> str:
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}"
    return _one_line(str(error))


def _lint_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from modelrollout import schema  # noqa: F401 (needs cel-python, for the CEL rules)
    except ImportError:
        raise CtlError("lint needs cel-python: pip install 'modelrollout[cli]'") from None
    crds = args.crd or sorted(DEFAULT_CRDS.glob("*.modelrollout.io.yaml"))
    if not crds:
        raise CtlError(f"no CRDs in {DEFAULT_CRDS}; pass --crd FILE")
    schemas = load_schemas(crds)
    bad = 0
    for name in args.files:
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as error:
            raise CtlError(f"{name}: {error.strerror or error}") from None
        label, findings = lint_text(raw, schemas)
        if not findings:
            print(f"{name}: ok ({label})", file=out)
            continue
        bad += 1
        print(f"{name}: {label}: {len(findings)} problem{'s' * (len(findings) != 1)}", file=out)
        for finding in findings:
            where = f"{finding.path}: " if finding.path else ""
            print(f"  {where}{finding.message}", file=out)
            if finding.explanation:
                print(f"      {finding.explanation}", file=out)
    if bad:
        files = f"{bad} of {len(args.files)} file{'s' * (len(args.files) != 1)}"
        print(f"error: lint found problems in {files}", file=err)
        return 1
    return 0
