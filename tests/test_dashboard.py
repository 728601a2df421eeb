"""The Grafana dashboard in the chart (charts/modelrollout/dashboards/modelrollout.json).

Covers: every PromQL expression of the panels and of the variables parses (``promtool check
rules`` on a rules file holding each as a recording rule, Grafana's variables substituted);
every metric an expression names is one the operator exports (modelrollout.telemetry) or one of
Knative's queue-proxy and the model server's (revision_app_request_count,
revision_app_request_latencies_*, modelrollout_prediction_value_*); every family the operator
exports is on some panel; the panels the issue asks for are there; and the chart ships the
dashboard as a valid ConfigMap with the sidecar's label only when ``dashboards.enabled``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from modelrollout.telemetry import Telemetry

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "modelrollout"
DASHBOARD = CHART / "dashboards" / "modelrollout.json"
#: Series from outside the operator: Knative's queue-proxy and the model server's predictions.
OTHERS = {
    "revision_app_request_count",
    *(f"revision_app_request_latencies_{s}" for s in ("bucket", "sum", "count")),
    *(f"modelrollout_prediction_value_{s}" for s in ("bucket", "sum", "count")),
}
#: What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": "1h",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}  # fmt: skip


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [p for p in found if p["type"] != "row"]


def panel_exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p.get("targets", [])]


def variable_exprs(board: dict[str, Any]) -> list[str]:
    """``label_values(selector, label)`` of the query variables: the selector is PromQL."""
    exprs = []
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = (
            variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        )
        matched = re.fullmatch(r"label_values\((.+),\s*([a-zA-Z_]\w*)\)", query)
        assert matched, f"variable {variable['name']}: {query!r} is not label_values(…)"
        exprs.append(matched[1])
    return exprs


def as_prometheus_sees_it(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    # Our own variables stand inside regex matchers: any value is a regex.
    return re.sub(r"\$\{?\w+\}?", "x", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names of an expression promtool accepted."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    return {
        token
        for token in re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text)
        if token.lower() not in KEYWORDS
    }


@pytest.fixture(scope="module")
def exported() -> frozenset[str]:
    return Telemetry().series_names()


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    """Given every panel and variable expression, when promtool checks them as recording rules,
    then it accepts them all."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is not on PATH"
    board = dashboard()
    exprs = panel_exprs(board) + variable_exprs(board)
    rules = [
        {"record": f"dashboard:query_{n}", "expr": as_prometheus_sees_it(e)}
        for n, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(rules)} rules found" in done.stdout


def test_a_broken_query_is_refused_by_the_same_check(tmp_path: Path) -> None:
    """The check above can fail: promtool refuses an expression with unbalanced parentheses."""
    path = tmp_path / "broken.rules.yaml"
    rule = {"record": "dashboard:broken", "expr": "sum(rate(modelrollout_canary_weight[1m])"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "broken", "rules": [rule]}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0


def test_every_query_names_only_metrics_that_exist(exported: frozenset[str]) -> None:
    board = dashboard()
    named = {n for e in panel_exprs(board) + variable_exprs(board) for n in metric_names(e)}
    assert named, "no metric names found: the extraction is broken"
    assert named <= exported | OTHERS, f"unknown metrics: {sorted(named - exported - OTHERS)}"


def test_the_name_extraction_sees_metrics_and_skips_labels_and_functions() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (revision_name, le) (rate(revision_app_request_"
        'latencies_bucket{namespace_name=~"x", le!="+Inf"}[1m]))) / on (revision_name) '
        "modelrollout_canary_weight"
    )
    assert metric_names(expr) == {
        "revision_app_request_latencies_bucket",
        "modelrollout_canary_weight",
    }


def test_every_family_the_operator_exports_is_on_a_panel(exported: frozenset[str]) -> None:
    """Nothing the operator measures is left off the dashboard (process_* aside)."""
    named = {n for e in panel_exprs(dashboard()) for n in metric_names(e)}
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in named}
    ours = {
        re.sub(r"_(total|bucket|sum|count|created)$", "", n)
        for n in exported
        if n.startswith("modelrollout_")
    }
    assert ours <= families, f"not on the dashboard: {sorted(ours - families)}"


def test_the_panels_the_issue_asks_for_are_there() -> None:
    """Weight over time, verdicts, stable-vs-canary error rate, latency and drift."""
    by_title = {p["title"]: p for p in panels(dashboard())}
    wanted = {
        "Canary weight": "modelrollout_canary_weight",
        "Verdicts": "modelrollout_analysis_verdicts_total",
        "Error rate per revision": "revision_app_request_count",
        "Latency p99 per revision": "revision_app_request_latencies_bucket",
        "Drift: median prediction per revision": "modelrollout_prediction_value_bucket",
    }
    for title, metric in wanted.items():
        assert title in by_title, f"no panel {title!r}"
        names = {n for t in by_title[title]["targets"] for n in metric_names(t["expr"])}
        assert metric in names, f"{title!r} does not query {metric}"
    assert by_title["Canary weight"]["type"] == "timeseries"


def test_panels_use_the_datasource_variable_and_have_unique_ids() -> None:
    board = dashboard()
    every = list(board["panels"]) + [c for p in board["panels"] for c in p.get("panels", [])]
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


# ---------------------------------------------------------------- in the chart


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    helm.disable_logging()
    return helm.Chart.load(CHART)


def config_maps(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    manifests = chart.render(values, name="modelrollout", namespace="modelrollout-system")
    return [
        d
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d and d["kind"] == "ConfigMap"
    ]


def test_the_chart_ships_no_dashboard_by_default(chart: helm.Chart) -> None:
    assert config_maps(chart, {}) == []


def test_the_chart_ships_the_dashboard_for_grafanas_sidecar(chart: helm.Chart) -> None:
    """Given dashboards.enabled, then one valid ConfigMap holds the dashboard unchanged, with
    the sidecar's label and the chosen namespace and annotations."""
    values = {"dashboards": {"enabled": True, "namespace": "monitoring",
                             "annotations": {"grafana_folder": "ModelRollout"}}}  # fmt: skip
    (found,) = config_maps(chart, values)

    kubernetes_validate.validate(found, kubernetes_validate.latest_version(), strict=True)
    assert found["metadata"]["namespace"] == "monitoring"
    assert found["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert found["metadata"]["annotations"] == {"grafana_folder": "ModelRollout"}
    assert json.loads(found["data"]["modelrollout.json"]) == dashboard()


def test_values_outside_the_schema_are_refused(chart: helm.Chart) -> None:
    with pytest.raises(Exception, match="dashboards"):
        config_maps(chart, {"dashboards": {"enabled": True, "folder": "x"}})
