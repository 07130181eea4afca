"""detectors.py imports alibi-detect's tabular and KS detectors without alibi_detect/__init__.py,
which would import numba (cd.cvm_online) and transformers (saving): the image leaves both out.

In a fresh interpreter, so that what other tests imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import numpy as np
from drift_monitor.detectors import detect_data_drift, detect_prediction_drift

rng = np.random.default_rng(0)
reference = np.column_stack([rng.normal(size=300), rng.integers(0, 3, 300)]).astype("float64")
current = np.column_stack([rng.normal(1.0, 1.0, 300), rng.integers(0, 3, 300)]).astype("float64")
data = detect_data_drift(
    reference, current, feature_names=["x", "c"], categorical_columns=[1], p_value=0.05, correction="fdr"
)
prediction = detect_prediction_drift(reference[:, 0], current[:, 0], p_value=0.05)
print(json.dumps({
    "data_drift": data.detected,
    "tests": [f.test for f in data.features],
    "prediction_drift": prediction.detected,
    "modules": sorted(sys.modules),
}))
"""


def test_tabular_and_ks_detectors_import_neither_numba_nor_transformers() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["data_drift"] and out["prediction_drift"]  # a shift of one standard deviation
    assert out["tests"] == ["ks", "chi2"]
    modules = set(out["modules"])
    assert {"alibi_detect.cd.tabular", "alibi_detect.cd.ks"} <= modules
    heavy = {m.split(".")[0] for m in modules} & {"numba", "llvmlite", "transformers", "torch", "tensorflow"}
    assert not heavy, f"imported {sorted(heavy)}"
    # alibi_detect/cd/__init__.py imports every detector; none of the others ran
    assert "alibi_detect.cd.cvm_online" not in modules
    assert "alibi_detect.saving" not in modules
