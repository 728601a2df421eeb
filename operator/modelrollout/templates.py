"""Metric query templates: ``{{ name }}`` placeholders filled in safely; pure, no I/O.

A query (inline in a ModelRollout or in a MetricTemplate) names the rollout's
namespace, InferenceService, revisions and intervals through placeholders.
What fills them comes from Kubernetes objects and from users, so a value must
never be able to change the shape of the query. Two defences, both applied:

- Every value is checked for its kind, wherever it goes: names (namespace,
  InferenceService, revisions) must be Kubernetes names (lowercase letters,
  digits, ``-`` and ``.``), durations must be durations. A name cannot carry a
  quote, a brace or a space, so it cannot inject PromQL even when the template
  author put the placeholder outside quotes.
- Every value is escaped for where the placeholder stands, found by scanning
  the query: inside a ``"…"`` or ``'…'`` string backslash and the quote are
  escaped; inside a ```…``` raw string (which has no escapes) a backtick is
  refused; outside strings a metric argument must be a single token (a number,
  a duration or a metric or label name). Control characters such as newlines
  are refused everywhere.

Metric arguments (``spec.strategy.analysis.metrics[].args``) are free text inside
quotes and single tokens outside them; they may not reuse a built-in name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from enum import Enum

from modelrollout import durations
from modelrollout.api import Reason
from modelrollout.errors import ModelRolloutError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

NAMESPACE = "namespace"
INFERENCE_SERVICE = "inferenceService"
STABLE_REVISION = "stableRevision"
CANARY_REVISION = "canaryRevision"
INTERVAL = "interval"
SINCE_CANARY_START = "sinceCanaryStart"
#: Only in count queries, which run once per arm: the revision being counted.
REVISION = "revision"

NAMES = frozenset({NAMESPACE, INFERENCE_SERVICE, STABLE_REVISION, CANARY_REVISION, REVISION})
DURATIONS = frozenset({INTERVAL, SINCE_CANARY_START})
BUILTINS = NAMES | DURATIONS

# A DNS-1123 subdomain: what Kubernetes allows for namespaces, InferenceServices,
# Knative revisions and Deployments alike.
_KUBERNETES_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_MAX_NAME = 253
# What one argument may be outside quotes: a number, a duration, or a metric or label name.
_TOKEN = re.compile(
    r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
    r"|(\d+(ms|s|m|h|d|w|y))+"
    r"|[A-Za-z_:][A-Za-z0-9_:]*"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_VALUE = 1024


class TemplateError(ModelRolloutError):
    """A query template that cannot be rendered: the spec (or the template) must change."""

    reason = Reason.INVALID_SPEC


class MissingValue(TemplateError):  # noqa: N818 (a kind of TemplateError)
    """A built-in variable with no value yet (e.g. the canary's revision before KServe names it)."""


class _Context(Enum):
    BARE = "outside quotes"
    DOUBLE = 'inside "…"'
    SINGLE = "inside '…'"
    RAW = "inside `…`"


def render(query: str, variables: Mapping[str, str]) -> str:
    """``query`` with each ``{{ name }}`` replaced by its checked, escaped value.

    Raises :class:`TemplateError` naming an unknown variable (and listing the
    known ones) or a value that does not fit where it stands, and
    :class:`MissingValue` for a built-in variable that has no value yet.
    """
    if "{{" in PLACEHOLDER.sub("", query):
        raise TemplateError("malformed placeholder: write {{ name }} with a letter-first name")
    matches = list(PLACEHOLDER.finditer(query))
    unknown = sorted({m[1] for m in matches if m[1] not in variables and m[1] not in BUILTINS})
    if unknown:
        raise TemplateError(
            f"unknown template variable{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; known: {', '.join(sorted(variables))}"
        )
    missing = sorted({m[1] for m in matches if m[1] not in variables})
    if missing:
        raise MissingValue(f"template variable {', '.join(missing)} has no value yet")
    contexts = _contexts(query, matches)
    out: list[str] = []
    last = 0
    for match, context in zip(matches, contexts, strict=True):
        out.append(query[last : match.start()])
        out.append(_fill(match[1], variables[match[1]], context))
        last = match.end()
    out.append(query[last:])
    return "".join(out)


def variables(
    *,
    namespace: str,
    inference_service: str,
    stable_revision: str | None,
    canary_revision: str | None,
    interval: str,
    since_canary_start_seconds: float,
    args: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The standard variables of one measurement, plus the metric's args.

    Revisions KServe has not named yet are left out (rendering a query that
    needs one raises :class:`MissingValue`). ``interval`` is the metric's interval
    as written in the spec; both durations are given to PromQL in seconds (or
    milliseconds), e.g. ``1m`` as ``60s``; the time since the canary started is
    rounded up to whole seconds so the window covers the whole canary.
    """
    out = dict(args or {})
    for name in sorted(out):
        if name in BUILTINS:
            raise TemplateError(f"metric arg {name!r} would override the built-in variable")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise TemplateError(f"metric arg {name!r} is not a variable name (letters, digits, _)")
    try:
        interval_seconds = durations.parse(interval)
    except ValueError as error:
        raise TemplateError(str(error)) from error
    out[NAMESPACE] = namespace
    out[INFERENCE_SERVICE] = inference_service
    if stable_revision is not None:
        out[STABLE_REVISION] = stable_revision
    if canary_revision is not None:
        out[CANARY_REVISION] = canary_revision
    out[INTERVAL] = promql_duration(interval_seconds)
    out[SINCE_CANARY_START] = f"{max(1, math.ceil(since_canary_start_seconds))}s"
    return out


def for_arm(variables: Mapping[str, str], revision_variable: str) -> dict[str, str]:
    """``variables`` with ``revision`` set to one arm's revision (``canaryRevision``
    or ``stableRevision``), for the count queries."""
    if revision_variable not in variables:
        raise MissingValue(f"template variable {revision_variable} has no value yet")
    return {**variables, REVISION: variables[revision_variable]}


def promql_duration(seconds: float) -> str:
    """A duration PromQL reads: whole seconds (``60s``) or else whole milliseconds."""
    if seconds <= 0:
        raise TemplateError(f"a PromQL duration must be longer than zero, not {seconds:g}s")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{math.ceil(seconds * 1000)}ms"


def _fill(name: str, value: str, context: _Context) -> str:
    _check_kind(name, value)
    where = f"template variable {name} {context.value}"
    if _CONTROL.search(value):
        raise TemplateError(f"{where}: the value {value!r} contains a control character")
    if context is _Context.DOUBLE:
        return value.replace("\\", "\\\\").replace('"', '\\"')
    if context is _Context.SINGLE:
        return value.replace("\\", "\\\\").replace("'", "\\'")
    if context is _Context.RAW:
        if "`" in value:
            raise TemplateError(f"{where}: the value {value!r} contains a backtick")
        return value
    # Built-ins passed their kind check: a name or duration cannot leave its place.
    if name not in BUILTINS and not _TOKEN.fullmatch(value):
        raise TemplateError(
            f"{where}: the value {value!r} is not a single number, duration or name; "
            'put the placeholder inside quotes, e.g. label="{{ ' + name + ' }}"'
        )
    return value


def _check_kind(name: str, value: str) -> None:
    if name in NAMES and not (len(value) <= _MAX_NAME and _KUBERNETES_NAME.fullmatch(value)):
        raise TemplateError(f"template variable {name}: {value!r} is not a Kubernetes name")
    if name in DURATIONS and not re.fullmatch(durations.PATTERN, value):
        raise TemplateError(f"template variable {name}: {value!r} is not a duration")
    if len(value) > _MAX_VALUE:
        raise TemplateError(f"template variable {name}: the value is longer than {_MAX_VALUE}")


def _contexts(query: str, matches: list[re.Match[str]]) -> list[_Context]:
    """Where each placeholder stands: in which kind of PromQL string, or outside.

    Placeholders are skipped as opaque text; ``#`` starts a comment outside strings.
    """
    starts = {m.start(): m.end() for m in matches}
    found: list[_Context] = []
    context = _Context.BARE
    closing = {_Context.DOUBLE: '"', _Context.SINGLE: "'", _Context.RAW: "`"}
    opening = {'"': _Context.DOUBLE, "'": _Context.SINGLE, "`": _Context.RAW}
    i = 0
    while i < len(query):
        if i in starts:
            found.append(context)
            i = starts[i]
            continue
        char = query[i]
        if context is _Context.BARE:
            if char in opening:
                context = opening[char]
            elif char == "#":
                end = query.find("\n", i)
                # Placeholders inside a comment are still filled (and checked as bare).
                comment_end = len(query) if end < 0 else end
                inner = [s for s in starts if i < s < comment_end]
                for start in sorted(inner):
                    found.append(_Context.BARE)
                    del starts[start]
                i = comment_end
                continue
        elif char == "\\" and context is not _Context.RAW:
            if i + 1 in starts:
                # The template's backslash would escape the value's first character.
                raise TemplateError("a placeholder may not follow a backslash inside a string")
            i += 2
            continue
        elif char == closing[context]:
            context = _Context.BARE
        i += 1
    return found
