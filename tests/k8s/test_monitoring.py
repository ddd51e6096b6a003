"""k8s/monitoring checked offline with the pinned promtool: the rules parse, every alert has a unit test that
fires and one that stays silent, every dashboard query parses, the PrometheusRule carries exactly the rule
file, the ServiceMonitor finds the Service, and the label prior is the bundled data's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.k8s import promql
from tests.k8s.conftest import Render

SEVERITIES = {"critical", "warning"}
RUNBOOK = "docs/deploy.md#"


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promql.promtool(), *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def test_promtool_is_the_pinned_version() -> None:
    finished = run_promtool("--version")
    assert f"version {promql.PROMETHEUS_VERSION}" in finished.stdout + finished.stderr


def test_prometheus_rule_carries_exactly_the_rule_file() -> None:
    from tools.sync_prometheus_rule import render

    assert promql.PROMETHEUS_RULE.read_text() == render(), "run python tools/sync_prometheus_rule.py"


def test_promtool_check_rules_on_the_prometheus_rule_spec(tmp_path: Path) -> None:
    """What the Operator loads: the PrometheusRule's spec, written out as a rule file."""
    spec = yaml.safe_load(promql.PROMETHEUS_RULE.read_text())["spec"]
    rules_file = tmp_path / "spec.rules.yml"
    rules_file.write_text(yaml.safe_dump(spec))
    finished = run_promtool("check", "rules", str(rules_file))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"SUCCESS: {len(promql.rules())} rules found" in finished.stdout


def test_promtool_unit_tests_pass() -> None:
    finished = run_promtool("test", "rules", promql.RULE_TESTS.name, cwd=promql.RULE_TESTS.parent)
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    cases = yaml.safe_load(promql.RULE_TESTS.read_text())["tests"]
    checks = [check for case in cases for check in case.get("alert_rule_test", [])]
    for alert in promql.alerts():
        name = alert["alert"]
        outcomes = [bool(check["exp_alerts"]) for check in checks if check["alertname"] == name]
        assert True in outcomes, f"{name}: no unit test where it fires"
        assert False in outcomes, f"{name}: no unit test where it stays silent"
    fired = [alert for check in checks for alert in check["exp_alerts"]]
    assert all(alert.get("exp_annotations") for alert in fired), "a firing case must check the annotations"


@pytest.mark.parametrize("alert", promql.alerts(), ids=lambda alert: alert["alert"])
def test_every_alert_has_for_severity_and_annotations(alert: dict[str, Any]) -> None:
    assert alert.get("for"), "an alert without `for` pages on one bad evaluation"
    assert alert.get("labels", {}).get("severity") in SEVERITIES
    annotations = alert.get("annotations", {})
    assert annotations.get("summary") and annotations.get("description")
    assert annotations.get("runbook_url", "").startswith(RUNBOOK)


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel query, its Grafana variables given valid values, as a recording rule: promtool parses it."""
    queries = promql.dashboard_queries()
    assert len(queries) >= 20
    group = {
        "name": "dashboard",
        "rules": [{"record": f"dashboard:query_{i}", "expr": query.expr} for i, query in enumerate(queries)],
    }
    rules_file = tmp_path / "dashboard.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [group]}))
    finished = run_promtool("check", "rules", str(rules_file))
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_dashboard_covers_what_the_issue_asks() -> None:
    names = set().union(*(promql.metric_names(query.expr) for query in promql.dashboard_queries()))
    wanted = {
        "tripod_http_requests_total",  # requests and errors per route
        "tripod_http_request_duration_seconds_bucket",  # p50/p99
        "tripod_http_requests_in_flight",
        "tripod_stage_duration_seconds_bucket",
        "tripod_predictions_total",
        "tripod_request_records_bucket",
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "kube_horizontalpodautoscaler_status_current_replicas",
        "kube_job_status_succeeded",
    }
    assert wanted <= names, wanted - names
    ids = [panel["id"] for panel in promql.dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_kustomization_ships_the_dashboard_and_the_custom_resources(renders: dict[str, Render]) -> None:
    rendered = renders["monitoring"]
    assert rendered.error is None, rendered.error
    (config_map,) = rendered.of_kind("ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["tripod.json"]) == promql.dashboard()
    (rule,) = rendered.of_kind("PrometheusRule")
    assert rule["spec"] == yaml.safe_load(promql.RULES.read_text())
    assert len(rendered.of_kind("ServiceMonitor")) == 1


def test_service_monitor_selects_the_service_port(renders: dict[str, Render]) -> None:
    (monitor,) = renders["monitoring"].of_kind("ServiceMonitor")
    (service,) = renders["base"].of_kind("Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"


def test_hosts_config_is_valid(tmp_path: Path) -> None:
    finished = run_promtool("check", "config", str(promql.PROMETHEUS_HOSTS_CONFIG))
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_the_two_prometheus_configs_differ_only_in_discovery() -> None:
    """prometheus.yml (Kubernetes) and prometheus-hosts.yml (files) must not drift apart: same globals, same
    rules, same job; only how targets are found differs."""
    kubernetes = yaml.safe_load(promql.PROMETHEUS_CONFIG.read_text())
    hosts = yaml.safe_load(promql.PROMETHEUS_HOSTS_CONFIG.read_text())
    (k_job,) = kubernetes.pop("scrape_configs")
    (h_job,) = hosts.pop("scrape_configs")
    assert kubernetes == hosts
    assert kubernetes["rule_files"] == ["rules/tripod.rules.yml"]
    for key in ("kubernetes_sd_configs", "relabel_configs", "file_sd_configs"):
        k_job.pop(key, None)
        h_job.pop(key, None)
    assert k_job == h_job


def test_label_prior_is_the_bundled_training_data(prepared_reviews: pd.DataFrame) -> None:
    """The prior the label-shift alert compares against is each label's share in the bundled reviews."""
    shares = prepared_reviews["sentiment"].value_counts(normalize=True)
    priors = {
        rule["labels"]["label"]: float(rule["expr"].removeprefix("vector(").removesuffix(")"))
        for rule in promql.rules()
        if rule.get("record") == "tripod:training_label_prior:ratio"
    }
    assert priors.keys() == set(shares.index)
    for label, prior in priors.items():
        assert prior == pytest.approx(shares[label], abs=5e-5), label
    assert sum(priors.values()) == pytest.approx(1.0, abs=1e-3)


def test_metric_name_lexer() -> None:
    expr = (
        'sum by (namespace, route) (rate(tripod_http_requests_total{status=~"5..", route="a{b}"}[5m]))'
        " / on (namespace) group_left max(tripod:x:rate5m offset 1m) > bool 0.5 unless vector(1)"
    )
    assert promql.metric_names(expr) == {"tripod_http_requests_total", "tripod:x:rate5m"}
