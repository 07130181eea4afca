"""The project's one version: `appVersion` in charts/mlops/Chart.yaml (tests/test_version.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

CHART_FILE = Path(__file__).resolve().parent.parent / "charts" / "mlops" / "Chart.yaml"


def app_version() -> str:
    """The chart's appVersion: the default image tag and the version of every service package."""
    return str(yaml.safe_load(CHART_FILE.read_text())["appVersion"])
