"""The statistical tests, and the only module that imports alibi-detect.

alibi-detect is licensed BSL-1.1 since 0.12 (free for non-production use; production needs a
licence from Seldon). Everything it does for us is behind the two functions below, which take and
return plain numpy arrays and dataclasses; swapping it for scipy (ks_2samp + chi2_contingency and a
Bonferroni / Benjamini-Hochberg step) or another library means rewriting this file only.

- data drift: `TabularDrift`, a two-sample Kolmogorov-Smirnov test per numeric feature and a
  chi-squared test per categorical feature, with a Bonferroni or FDR (Benjamini-Hochberg) correction;
- prediction drift: `KSDrift` on the model's outputs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Correction = Literal["bonferroni", "fdr"]


@dataclass(frozen=True)
class FeatureTest:
    """One feature's test result, free of alibi-detect types so the library stays inside this module."""

    feature: str
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    drifted: bool
    """p_value is below the corrected threshold."""


@dataclass(frozen=True)
class DataDrift:
    """The per-feature tests of one model version and the verdict after the multiple-testing correction."""

    detected: bool
    threshold: float
    """Per-feature p-value threshold after the correction (Bonferroni: p/n; FDR: the Benjamini-Hochberg cut-off)."""
    features: list[FeatureTest]


@dataclass(frozen=True)
class KsTest:
    """The two-sample KS test of the served predictions against the reference predictions."""

    statistic: float
    p_value: float
    detected: bool


def detect_data_drift(
    reference: NDArray[Any],
    current: NDArray[Any],
    *,
    feature_names: list[str],
    categorical_columns: list[int],
    p_value: float,
    correction: Correction,
) -> DataDrift:
    """Test every column of `current` against the same column of `reference` (both numeric-encoded)."""
    TabularDrift, _ = _alibi()
    # Tell alibi the categories the *reference* holds. Its chi-squared table is the union of these and
    # the categories seen in `current`, so every column has a non-zero count on at least one side;
    # passing the full category list from the spec instead would leave all-zero columns for categories
    # seen in neither sample, and scipy's chi2_contingency rejects those.
    categories_per_feature = {
        i: [int(code) for code in np.unique(reference[:, i])] for i in categorical_columns
    }
    detector = TabularDrift(
        reference,
        p_val=p_value,
        categories_per_feature=categories_per_feature,
        correction=correction,
    )
    result = detector.predict(current, drift_type="batch", return_p_val=True, return_distance=True)["data"]
    p_values = np.asarray(result["p_val"], dtype="float64")
    statistics = np.asarray(result["distance"], dtype="float64")
    detected = bool(result["is_drift"])
    # alibi returns one threshold when something is significant, and the whole Benjamini-Hochberg
    # ladder (an array) when nothing is; the smallest step is then the effective threshold.
    threshold = float(np.min(result["threshold"]))
    drifted = p_values < threshold if detected else np.zeros(len(p_values), dtype=bool)
    categorical = set(categorical_columns)
    features = [
        FeatureTest(
            feature=name,
            test="chi2" if i in categorical else "ks",
            statistic=float(statistics[i]),
            p_value=float(p_values[i]),
            drifted=bool(drifted[i]),
        )
        for i, name in enumerate(feature_names)
    ]
    return DataDrift(detected=detected, threshold=threshold, features=features)


def detect_prediction_drift(reference: NDArray[Any], current: NDArray[Any], *, p_value: float) -> KsTest:
    """Two-sample KS test on one-dimensional model outputs."""
    _, KSDrift = _alibi()
    detector = KSDrift(reference.reshape(-1, 1), p_val=p_value)
    result = detector.predict(current.reshape(-1, 1), return_p_val=True, return_distance=True)["data"]
    return KsTest(
        statistic=float(np.asarray(result["distance"])[0]),
        p_value=float(np.asarray(result["p_val"])[0]),
        detected=bool(result["is_drift"]),
    )


def _alibi() -> tuple[type, type]:
    """(TabularDrift, KSDrift), imported on first use: a run that fails early should not pay for it."""
    spec = None if "alibi_detect" in sys.modules else importlib.util.find_spec("alibi_detect")
    if spec is not None and spec.submodule_search_locations:
        # alibi_detect/__init__.py and alibi_detect/cd/__init__.py import every detector: numba via
        # cd.cvm_online, transformers via saving; ~220 MB the image leaves out. Stand in for those two
        # packages with empty modules over their installed directories, so only tabular.py, ks.py and
        # what they import run. (find_spec locates a top-level package without executing it.)
        root = spec.submodule_search_locations[0]
        cd = types.ModuleType("alibi_detect.cd")
        cd.__path__ = [os.path.join(root, "cd")]
        package = types.ModuleType("alibi_detect")
        package.__path__ = [root]
        package.cd = cd  # type: ignore[attr-defined]  # a module object takes any attribute
        sys.modules.update({"alibi_detect": package, "alibi_detect.cd": cd})
    from alibi_detect.cd.ks import KSDrift
    from alibi_detect.cd.tabular import TabularDrift

    return TabularDrift, KSDrift
