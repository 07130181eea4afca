"""The quality series as Prometheus sees them: pushed to a real Pushgateway, scraped by a real Prometheus
(honor_labels, as the chart does) with the chart's rules file. The dashboard's quality panels return
data, and ModelQualityDegraded goes active for the worse version only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from drift_monitor.push import QUALITY_JOB, push_quality
from scripts import local_stack as stack
from tests.drift_monitor.test_quality_push import quality_report, version_quality

DASHBOARD = stack.CHART / "dashboards" / "mlops.json"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[stack.Process, stack.Process]]:
    state: Path = tmp_path_factory.mktemp("quality-prometheus")
    with stack.local_stack(state) as s:
        gateway = s.add(stack.start_pushgateway(state))
        prom = s.add(
            stack.start_prometheus(
                state, predictors=[], pushgateway=gateway.url, alertmanager=None, interval="1s"
            )
        )
        yield gateway, prom


def promql(prometheus: stack.Process, query: str) -> list[dict]:
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=5).json()
    assert answer["status"] == "success", (query, answer)
    return answer["data"]["result"]


def quality_panel_queries() -> list[tuple[str, str]]:
    """(title, PromQL) of the dashboard's panels on the monitor's series, $model resolved."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (panel["title"], target["expr"].replace("$model", "hotel-adr"))
        for panel in panels
        for target in panel.get("targets", [])
        if "model_quality_" in target["expr"] and "predictor_" not in target["expr"]
    ]


def test_the_dashboard_has_quality_panels() -> None:
    assert len(quality_panel_queries()) >= 6


@pytest.mark.integration  # Prometheus and the Pushgateway (make system-deps)
def test_quality_panels_have_data_and_only_the_worse_version_alerts(
    prometheus: tuple[stack.Process, stack.Process],
) -> None:
    gateway, prom = prometheus
    push_quality(
        gateway.url,
        quality_report(
            version_quality("3", mae=30.0),  # 1.5x its training MAE of 20, 150 labels: degraded
            version_quality("4", mae=22.0),  # 1.1x: within the ratio
            finished_at=1_700_000_100.0,
        ),
    )
    stack.wait_for(
        lambda: len(promql(prom, f'model_quality_mae{{job="{QUALITY_JOB}"}}')) == 2,
        timeout=30,
        what="the quality series scraped from the Pushgateway",
    )

    empty = [(title, expr) for title, expr in quality_panel_queries() if not promql(prom, expr)]
    assert empty == [], "dashboard panels without data"

    active = stack.wait_for(
        lambda: stack.prometheus_alerts(prom.url, "ModelQualityDegraded"),
        timeout=30,
        what="ModelQualityDegraded pending",
    )
    assert [(a["labels"]["model_version"], float(a["value"])) for a in active] == [("3", 1.5)]
