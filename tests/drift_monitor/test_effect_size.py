from __future__ import annotations

import numpy as np
import pytest

from drift_monitor.effect_size import psi


def test_psi_of_a_sample_against_itself_is_zero() -> None:
    x = np.random.default_rng(0).normal(size=2000)

    assert psi(x, x, categorical=False) == pytest.approx(0, abs=1e-12)


def test_psi_grows_with_the_shift_and_ignores_the_sample_size() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=5000)

    small = psi(reference, rng.normal(0.1, size=50_000), categorical=False)
    large = psi(reference, rng.normal(1.0, size=500), categorical=False)

    assert small < 0.1 < 0.25 < large


def test_psi_of_categories_counts_a_new_category() -> None:
    reference = np.array([0] * 500 + [1] * 500, dtype=float)
    current = np.array([0] * 400 + [1] * 400 + [2] * 200, dtype=float)  # code 2: unseen ("other")

    assert psi(reference, current, categorical=True) > 0.25


def test_psi_handles_a_constant_feature() -> None:
    assert psi(np.zeros(100), np.zeros(50), categorical=False) == pytest.approx(0, abs=1e-12)
    assert psi(np.zeros(100), np.ones(50), categorical=False) > 1
