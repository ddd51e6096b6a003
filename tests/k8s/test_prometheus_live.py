"""A real Prometheus (the pinned one) scrapes a real ``tripod serve`` on loopback with the shipped config and
rules, after a short bounded load; then every query the rules, the alerts, the dashboard and the autoscaler
make over Tripod's metrics must return data, and every metric any of them reads must be exported by the server
or listed in ``CLUSTER_METRICS`` with the exporter a cluster runs for it.

The config is k8s/monitoring/prometheus.yml with three changes only (``live_config``): Kubernetes discovery is
swapped for a file target that carries the labels Kubernetes discovery would give a Tripod pod (so the
shipped relabelling runs as is), the scrape and evaluation intervals drop to 1 s, and the rule file is named by
its absolute path (the shipped file).  prometheus-hosts.yml runs unchanged beside it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.server import LOOPBACK, free_port, http_json, running_server
from tests.k8s import promql

NAMESPACE = "tripod"
"""The namespace the fake Kubernetes target reports (the one the KEDA trigger's query names)."""
POD = "tripod-5d8c7b9f4-x7k2p"
POD_META = {
    "__meta_kubernetes_namespace": NAMESPACE,
    "__meta_kubernetes_pod_name": POD,
    "__meta_kubernetes_pod_container_name": "tripod",
    "__meta_kubernetes_pod_container_port_name": "http",
    "__meta_kubernetes_pod_label_app_kubernetes_io_name": "tripod",
    "__meta_kubernetes_pod_label_app_kubernetes_io_component": "serving",
    "__meta_kubernetes_pod_phase": "Running",
}
"""What Kubernetes pod discovery sets for a serving pod's `http` port."""
DECOYS = {
    "127.0.0.1:9": {**POD_META, "__meta_kubernetes_pod_label_app_kubernetes_io_component": "batch-transform"},
    "127.0.0.1:10": {**POD_META, "__meta_kubernetes_pod_container_port_name": "grpc"},
    "127.0.0.1:11": {**POD_META, "__meta_kubernetes_pod_phase": "Pending"},
}
"""Targets the relabelling must drop: a batch pod, another port, a pod not running."""
REQUESTS = 200
REVIEWS = [
    "Love this dress, fits perfectly and the fabric is soft.",
    "Terrible quality, it fell apart after one wash.",
    "It is okay, nothing special but not bad either.",
    "The color is lovely but the sizing runs small.",
]


@dataclass(frozen=True)
class Live:
    prometheus: str
    server: str
    metrics_text: str
    statuses: Counter[tuple[str, int]]


def live_config(work: Path, server_port: int) -> dict[str, Any]:
    """The shipped prometheus.yml with discovery, intervals and the rule file's path changed, nothing else."""
    config = yaml.safe_load(promql.PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(promql.MONITORING / path) for path in config["rule_files"]]
    (job,) = config["scrape_configs"]
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    targets = work / "targets"
    targets.mkdir()
    job["file_sd_configs"] = [{"files": [str(targets / "*.json")]}]
    groups = [{"targets": [f"{LOOPBACK}:{server_port}"], "labels": POD_META}]
    groups += [{"targets": [address], "labels": labels} for address, labels in DECOYS.items()]
    (targets / "pods.json").write_text(json.dumps(groups))
    return config


@contextlib.contextmanager
def running_prometheus(config_file: Path, work: Path) -> Iterator[str]:
    """A Prometheus on a free loopback port until the block ends; stopped by its PID."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    log_path = work / "prometheus.log"
    command = [
        promql.prometheus_binary(),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=work)
        try:
            deadline = time.monotonic() + 30
            while http_get_status(f"{url}/-/ready") != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prometheus did not start: {log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def http_get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def api(prometheus: str, path: str, **params: str) -> Any:
    status, body = http_json(f"{prometheus}/api/v1/{path}?{urllib.parse.urlencode(params)}")
    assert status == 200 and isinstance(body, dict) and body["status"] == "success", (path, params, body)
    return body["data"]


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    data = api(prometheus, "query", query=expr)
    assert data["resultType"] == "vector", (expr, data)
    result: list[dict[str, Any]] = data["result"]
    return result


def send_load(server: str) -> Counter[tuple[str, int]]:
    """200 requests over /predict and /invocations, one in ten a client mistake (422, 404); 4 at a time."""

    def one(i: int) -> tuple[str, int]:
        if i % 20 == 0:
            return "/predict", http_json(f"{server}/predict", {"records": [{"review": "wrong field"}]})[0]
        if i % 20 == 10:
            return "unmatched", http_json(f"{server}/no-such-route")[0]
        texts = [REVIEWS[(i + k) % len(REVIEWS)] for k in range(1 + i % 3)]
        if i % 2:
            return "/predict", http_json(
                f"{server}/predict", {"records": [{"review_body": t} for t in texts]}
            )[0]
        body = "".join(f'"{t}"\n' for t in texts).encode()
        request = urllib.request.Request(
            f"{server}/invocations", data=body, headers={"content-type": "text/csv"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return "/invocations", int(response.status)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return Counter(pool.map(one, range(REQUESTS)))


def wait_for_rules(prometheus: str, requests: int, timeout_s: float = 40.0) -> None:
    """Until a scrape has seen every request and the rules have been evaluated on it twice."""
    deadline = time.monotonic() + timeout_s
    counted = 'sum(tripod_http_requests_total{route=~"/predict|/invocations|unmatched"})'
    while True:
        seen = query(prometheus, counted)
        if seen and float(seen[0]["value"][1]) >= requests:
            break
        assert time.monotonic() < deadline, f"Prometheus saw {seen} of {requests} requests"
        time.sleep(0.5)
    time.sleep(2.5)  # two more scrapes and evaluations at 1 s
    while not query(prometheus, "tripod:predictions_label:share_1h"):
        assert time.monotonic() < deadline, "the recording rules produced nothing"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def live(trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("prometheus")
    with running_server(trained_model_dir, log_path=work / "server.log") as server:
        port = int(server.url.rsplit(":", 1)[1])
        config_file = work / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(live_config(work, port)))
        with running_prometheus(config_file, work) as prometheus:
            statuses = send_load(server.url)
            wait_for_rules(prometheus, REQUESTS)
            with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
                metrics_text = response.read().decode()
            yield Live(prometheus, server.url, metrics_text, statuses)


def test_load_was_bounded_and_answered(live: Live) -> None:
    assert sum(live.statuses.values()) == REQUESTS
    assert live.statuses[("/predict", 422)] == REQUESTS // 20
    assert live.statuses[("unmatched", 404)] == REQUESTS // 20
    assert live.statuses[("/predict", 200)] + live.statuses[("/invocations", 200)] == REQUESTS * 9 // 10


def test_live_config_changes_only_discovery_intervals_and_rule_path(tmp_path: Path) -> None:
    shipped = yaml.safe_load(promql.PROMETHEUS_CONFIG.read_text())
    changed = live_config(tmp_path, 1234)
    for config in (shipped, changed):
        config["global"].pop("scrape_interval")
        config["global"].pop("evaluation_interval")
        config["rule_files"] = [Path(path).name for path in config["rule_files"]]
        config["scrape_configs"][0].pop("kubernetes_sd_configs", None)
        config["scrape_configs"][0].pop("file_sd_configs", None)
    assert changed == shipped
    assert live_config.__doc__


def test_relabelling_keeps_only_serving_pods_and_labels_them_as_kubernetes_would(live: Live) -> None:
    targets = api(live.prometheus, "targets")
    (active,) = targets["activeTargets"]
    assert active["health"] == "up", active
    labels = active["labels"]
    assert labels["namespace"] == NAMESPACE and labels["pod"] == POD and labels["container"] == "tripod"
    assert labels["job"] == "tripod"
    dropped = {target["discoveredLabels"]["__address__"] for target in targets["droppedTargets"]}
    assert dropped == set(DECOYS)


def test_every_rule_loads_and_evaluates_cleanly(live: Live) -> None:
    groups = api(live.prometheus, "rules")["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert len(loaded) == len(promql.rules())
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in loaded if rule["health"] != "ok"]
    assert not unhealthy


def test_a_healthy_server_under_bounded_load_fires_no_alert(live: Live) -> None:
    assert api(live.prometheus, "alerts")["alerts"] == []


def where(q: promql.Query) -> str:
    return q.where


@pytest.mark.parametrize("rule", promql.recording_rules(), ids=where)
def test_recording_rule_returns_data(live: Live, rule: promql.Query) -> None:
    record = rule.where.removeprefix("record ")
    assert query(live.prometheus, rule.expr), f"{record}: its expression returns nothing"
    assert query(live.prometheus, record), f"{record}: nothing recorded"


@pytest.mark.parametrize("alert", promql.alert_queries(), ids=where)
def test_alert_evaluates_and_its_tripod_inputs_return_data(live: Live, alert: promql.Query) -> None:
    """An alert's expression is empty while nothing is wrong; what it reads must not be."""
    query(live.prometheus, alert.expr)  # evaluates without error
    for name in promql.metric_names(alert.expr) - promql.CLUSTER_METRICS.keys():
        assert query(live.prometheus, name), f"{alert.where} reads {name}, which has no data"


TRIPOD_QUERIES = [
    q for q in promql.dashboard_queries() + promql.autoscaler_queries() if not promql.is_cluster_query(q)
]


@pytest.mark.parametrize("panel", TRIPOD_QUERIES, ids=where)
def test_dashboard_and_autoscaler_queries_over_tripod_metrics_return_data(
    live: Live, panel: promql.Query
) -> None:
    assert query(live.prometheus, panel.expr), f"{panel.where}: {panel.expr} returns nothing"


def test_every_metric_read_is_exported_by_tripod_or_listed_as_a_cluster_metric(live: Live) -> None:
    exported = promql.exported_names(live.metrics_text)
    recorded = {rule["record"] for rule in promql.rules() if "record" in rule}
    read: dict[str, list[str]] = {}
    for q in promql.all_queries():
        for name in promql.metric_names(q.expr):
            read.setdefault(name, []).append(q.where)
    for name in promql.dashboard_variable_metrics():
        read.setdefault(name, []).append("dashboard variable")
    unknown = {
        name: places
        for name, places in read.items()
        if name not in exported and name not in recorded and name not in promql.CLUSTER_METRICS
    }
    assert not unknown, f"read but exported by nothing: {unknown}"
    assert not promql.CLUSTER_METRICS.keys() & exported, "a cluster metric Tripod exports itself"
    assert promql.CLUSTER_METRICS.keys() <= read.keys(), "CLUSTER_METRICS lists a metric nothing reads"
    cluster_only = [q.where for q in promql.all_queries() if promql.is_cluster_query(q)]
    assert len(cluster_only) < len(promql.all_queries()) // 2


def test_hosts_config_runs_unchanged_and_finds_the_listed_server(live: Live, tmp_path: Path) -> None:
    """prometheus-hosts.yml, copied byte for byte beside the shipped rules and a targets file, starts, loads
    every rule and scrapes the server it lists."""
    (tmp_path / "prometheus-hosts.yml").write_bytes(promql.PROMETHEUS_HOSTS_CONFIG.read_bytes())
    (tmp_path / "rules").symlink_to(promql.RULES.parent, target_is_directory=True)
    (tmp_path / "targets").mkdir()
    server = live.server.removeprefix("http://")
    (tmp_path / "targets" / "tripod.json").write_text(json.dumps([{"targets": [server]}]))
    with running_prometheus(tmp_path / "prometheus-hosts.yml", tmp_path) as prometheus:
        groups = api(prometheus, "rules")["groups"]
        assert sum(len(group["rules"]) for group in groups) == len(promql.rules())
        deadline = time.monotonic() + 10
        while not (active := api(prometheus, "targets")["activeTargets"]):
            assert time.monotonic() < deadline, "the file target was not discovered"
            time.sleep(0.2)
        assert [target["labels"]["instance"] for target in active] == [server]
        assert active[0]["labels"]["job"] == "tripod"
