"""AUC and EER of verification scores checked against scikit-learn, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score, roc_curve

from anonbench.metrics.verification import equal_error_rate, roc_auc, roc_points


def _cases(seed: int, n: int = 40):
    """Random scores rounded to 0, 1 or 2 decimals (0 decimals: heavy ties) and labels."""
    rng = np.random.default_rng(seed)
    for _ in range(50):
        s = np.round(rng.normal(size=n) + rng.uniform(0, 2), rng.integers(0, 3))
        y = rng.integers(0, 2, n)
        if 0 < y.sum() < n:
            yield s, y


def _sklearn_eer(s: np.ndarray, y: np.ndarray) -> float:
    """The usual recipe: the FPR where TPR(FPR), linear between roc_curve's points, is 1 - FPR."""
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0, xtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_points_and_auc_match_sklearn_with_ties(seed):
    for s, y in _cases(seed):
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        got = roc_points(s, y)
        np.testing.assert_allclose(got[0], fpr)
        np.testing.assert_allclose(got[1], tpr)
        assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_the_interpolated_sklearn_roc(seed):
    for s, y in _cases(seed):
        assert equal_error_rate(s, y) == pytest.approx(_sklearn_eer(s, y), abs=1e-9)


def test_known_answers():
    y = np.array([1, 1, 0, 0])
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 1.0
    assert equal_error_rate(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    # every score tied: AUC one half (ties count half), EER one half
    assert roc_auc(np.zeros(4), y) == 0.5
    assert equal_error_rate(np.zeros(4), y) == 0.5
    # fully inverted
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 0.0
    assert equal_error_rate(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    # one positive of two below one negative: AUC 3/4, EER 1/2
    s = np.array([0.9, 0.3, 0.5, 0.1])
    assert roc_auc(s, y) == 0.75
    assert equal_error_rate(s, y) == 0.5


def test_one_class_fails_clearly():
    with pytest.raises(ValueError, match="both matched and mismatched"):
        roc_auc(np.array([0.1, 0.2]), np.array([1, 1]))
