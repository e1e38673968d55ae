"""The Grafana dashboard and the Prometheus scrape config in deploy/ agree with the metrics the code
defines and with the services docker-compose.yml runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.contracts import topology
from common.core.settings import Settings
from common.service.metrics import Metrics

ROOT = Path(__file__).resolve().parents[4]
DASHBOARD = ROOT / "deploy" / "grafana" / "taskswarm-dashboard.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# Labels Prometheus adds to every scraped series (the last one by deploy/prometheus/prometheus.yml).
TARGET_LABELS = {"instance", "job", "compose_service", "le"}


def exposed() -> dict[str, set[str]]:
    """Every series name a Metrics registry can expose (with its suffixes) → its labels."""
    names: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    for family in Metrics("any_svc").registry.collect():
        if not family.name.startswith("taskswarm_"):
            continue
        labels = set(family.samples[0].labels) if family.samples else set()
        for suffix in suffixes[family.type]:
            names[family.name + suffix] = labels
    return names


@pytest.fixture(scope="module")
def exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["targets"] for p in panels)
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_the_dashboard_queries_only_metrics_the_services_expose(exprs: list[str]) -> None:
    known = exposed()
    used = {name for expr in exprs for name in re.findall(r"\btaskswarm_\w+", expr)}
    assert used - known.keys() == set()


def test_the_dashboard_shows_requests_events_lag_and_outbox_backlog(exprs: list[str]) -> None:
    used = {name for expr in exprs for name in re.findall(r"\btaskswarm_\w+", expr)}
    assert {
        "taskswarm_http_requests_total",
        "taskswarm_http_request_duration_seconds_bucket",
        "taskswarm_events_published_total",
        "taskswarm_events_consumed_total",
        "taskswarm_consumer_lag",
        "taskswarm_consumer_pending",
        "taskswarm_dead_letters",
        "taskswarm_outbox_backlog",
        "taskswarm_outbox_oldest_age_seconds",
    } <= used


def test_the_dashboard_groups_by_labels_that_exist(exprs: list[str]) -> None:
    # Labels are only known once a series exists; the definitions name them (see common/service/metrics.py).
    metrics = Metrics("any_svc")
    defined: set[str] = set(TARGET_LABELS)
    for metric in vars(metrics).values():
        defined.update(getattr(metric, "_labelnames", ()))
    grouped = {
        label.strip() for expr in exprs for group in re.findall(r"by \(([^)]*)\)", expr) for label in group.split(",")
    }
    assert grouped - defined - {""} == set()


def test_prometheus_scrapes_every_deployed_process_on_its_metrics_port() -> None:
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS.read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    names = {name for sd in job["dns_sd_configs"] for name in sd["names"]}
    deployed = {spec.name.replace("_", "-") for spec in topology.services()} | {"gateway"}
    assert names == deployed
    assert names <= set(compose["services"])
    metrics_ports = {int(compose["services"][name]["environment"]["METRICS_PORT"]) for name in names}
    assert metrics_ports == {sd["port"] for sd in job["dns_sd_configs"]} == {Settings().metrics_port}


def test_the_metrics_port_is_never_published() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert published and not any(port.endswith(f":{Settings().metrics_port}") for port in published)
    assert compose["services"]["gateway"]["ports"] == ["${GATEWAY_PORT:-8080}:8080"]
