"""Population Stability Index: how much a feature's distribution moved, independent of the sample size.

A p-value answers "is there any difference?" and with 50,000 samples even a negligible one is
"significant"; the PSI says how large the difference is. Rules of thumb: < 0.1 negligible,
0.1-0.25 moderate, > 0.25 a major shift.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

NUMERIC_BINS = 10
MIN_PROPORTION = 1e-4  # keeps log(p/q) finite when a bin is empty on one side


def psi(reference: NDArray[Any], current: NDArray[Any], *, categorical: bool) -> float:
    """PSI of `current` against `reference`: per category, or over the reference's deciles for numbers."""
    if categorical:
        ref_bins, cur_bins = reference.astype("int64"), current.astype("int64")
        n_bins = int(max(ref_bins.max(initial=0), cur_bins.max(initial=0))) + 1
    else:
        inner_edges = np.unique(np.quantile(reference, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]))
        # Bins (-inf, e1], (e1, e2], ..., (ek, inf): a feature with few distinct values gets few bins.
        ref_bins = np.searchsorted(inner_edges, reference, side="left")
        cur_bins = np.searchsorted(inner_edges, current, side="left")
        n_bins = len(inner_edges) + 1
    p_ref = _proportions(ref_bins, n_bins)
    p_cur = _proportions(cur_bins, n_bins)
    return float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))


def _proportions(bins: NDArray[Any], n_bins: int) -> NDArray[Any]:
    counts = np.bincount(bins, minlength=n_bins).astype("float64")
    proportions: NDArray[np.float64] = np.clip(counts / max(counts.sum(), 1.0), MIN_PROPORTION, None)
    return proportions
