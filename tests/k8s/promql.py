"""What k8s/monitoring queries: the rules' and the dashboard's PromQL expressions, the metric names in them, and
the metrics that only a cluster exports.  Shared by test_monitoring.py (promtool) and test_prometheus_live.py
(a real Prometheus scraping a real server)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "k8s" / "monitoring"
RULES = MONITORING / "rules" / "tripod.rules.yml"
RULE_TESTS = MONITORING / "tests" / "tripod.rules.test.yml"
DASHBOARD = MONITORING / "dashboards" / "tripod.json"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
PROMETHEUS_HOSTS_CONFIG = MONITORING / "prometheus-hosts.yml"

PROMETHEUS_VERSION = "2.42.0"
"""What tools/install-prometheus.sh pins (Debian's 2.42.0+ds-5+deb12u1); `make test` installs it first."""

CLUSTER_METRICS = {
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kube_pod_labels": "kube-state-metrics (--metric-labels-allowlist=pods=[app.kubernetes.io/name,...])",
    "kube_pod_container_resource_requests": "kube-state-metrics",
    "kube_job_failed": "kube-state-metrics",
    "kube_job_labels": "kube-state-metrics (--metric-labels-allowlist=jobs=[app.kubernetes.io/component])",
    "kube_job_spec_completions": "kube-state-metrics",
    "kube_job_status_succeeded": "kube-state-metrics",
    "kube_job_status_active": "kube-state-metrics",
    "kube_job_status_failed": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_current_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_desired_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_spec_min_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_spec_max_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_spec_target_metric": "kube-state-metrics",
    "container_cpu_usage_seconds_total": "kubelet cAdvisor (/metrics/cadvisor)",
    "container_memory_working_set_bytes": "kubelet cAdvisor (/metrics/cadvisor)",
}
"""Every metric the rules or the dashboard read that a Tripod server does not export, with its exporter: these
exist only on a cluster.  Anything else they read must come from Tripod's own /metrics or a recording rule."""

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "${namespace}": ".*"}
"""Grafana's variables in the dashboard's queries, and a valid value for each (what "All" sends)."""

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right", "offset"}
    | {"inf", "nan", "Inf", "NaN"}
)


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it is used (for messages)."""

    where: str
    expr: str


def promtool() -> str:
    """The pinned promtool; a failure, never a skip, when `make test`'s install did not happen."""
    path = shutil.which("promtool")
    assert path, "promtool is missing: run tools/install-prometheus.sh (make test runs it)"
    return path


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    assert path, "prometheus is missing: run tools/install-prometheus.sh (make test runs it)"
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    assert f"version {PROMETHEUS_VERSION}" in version, version
    return path


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def recording_rules() -> list[Query]:
    return [Query(f"record {rule['record']}", rule["expr"]) for rule in rules() if "record" in rule]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def alert_queries() -> list[Query]:
    return [Query(f"alert {rule['alert']}", rule["expr"]) for rule in alerts()]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found += _panels(panel.get("panels", []))  # panels inside collapsed rows
    return found


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable without a test value in {expr!r}"
    return expr


def dashboard_queries() -> list[Query]:
    """Every panel target's expression, with Grafana's variables replaced by valid values."""
    return [
        Query(f"panel {panel['title']!r} {target['refId']}", grafana_to_promql(target["expr"]))
        for panel in _panels(dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


def dashboard_variable_metrics() -> set[str]:
    """Metrics the dashboard's variables read (``label_values(METRIC, label)``)."""
    found = set()
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        found |= set(re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", text))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (a small lexer, enough for the expressions shipped here)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery windows
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if match[0] in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword, or a function / aggregation being called
        names.add(match[0])
    return names


def autoscaler_queries() -> list[Query]:
    """The Prometheus triggers of every KEDA ScaledObject under k8s/ (the autoscaler reads Tripod's metrics too)."""
    found = []
    for path in sorted((ROOT / "k8s").rglob("*.y*ml")):
        for item in yaml.safe_load_all(path.read_text()):
            if not isinstance(item, dict) or item.get("kind") != "ScaledObject":
                continue
            for trigger in item.get("spec", {}).get("triggers", []):
                if trigger.get("type") == "prometheus":
                    where = f"{path.relative_to(ROOT)} trigger"
                    found.append(Query(where, trigger["metadata"]["query"]))
    return found


def all_queries() -> list[Query]:
    return recording_rules() + alert_queries() + dashboard_queries() + autoscaler_queries()


def is_cluster_query(query: Query) -> bool:
    """Whether the expression reads a metric only a cluster exports (so no local server can give it data)."""
    return bool(metric_names(query.expr) & CLUSTER_METRICS.keys())


def exported_names(metrics_text: str) -> set[str]:
    """Sample names in a Prometheus text exposition (``_bucket``/``_sum``/``_count`` as they appear)."""
    return {
        re.split(r"[{\s]", line, maxsplit=1)[0]
        for line in metrics_text.splitlines()
        if line and not line.startswith("#")
    }
