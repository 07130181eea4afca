"""checkov finds nothing on the rendered chart; the skips live, with reasons, in charts/mlops/.checkov.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, Renders, find_checkov, run

# NetworkPolicies are on by default, so CKV2_K8S_6 ("pods without a NetworkPolicy") runs on both.
EXTRA_SKIPS: dict[str, list[str]] = {"default": [], "all-on": []}


@pytest.mark.parametrize("scenario", list(EXTRA_SKIPS))
def test_checkov_passes(renders: Renders, scenario: str, tmp_path: Path) -> None:
    (tmp_path / "manifests.yaml").write_text(renders(scenario).text)
    config = CHART / ".checkov.yaml"
    # A --skip-check on the command line replaces the config file's list, so pass the union.
    skips = yaml.safe_load(config.read_text())["skip-check"] + EXTRA_SKIPS[scenario]
    cmd = [find_checkov(), "--config-file", str(config), "--directory", str(tmp_path)]
    cmd += ["--skip-check", ",".join(skips)]
    result = run(cmd)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout, result.stdout[-6000:]
