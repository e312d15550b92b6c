"""TAR@FAR and accuracy checked against scikit-learn and brute force on synthetic scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from anonbench.metrics.verification import accuracy_threshold, far_threshold, kfold_verification


def _synthetic(seed: int, folds: int = 10, n: int = 300, sep: float = 2.0):
    rng = np.random.default_rng(seed)
    scores, labels, fold = [], [], []
    for f in range(folds):
        scores += [*rng.normal(sep, 1, n), *rng.normal(0, 1, n)]
        labels += [1] * n + [0] * n
        fold += [f] * (2 * n)
    # rounding creates ties, the hard case for threshold conventions
    return np.round(np.array(scores), 2), np.array(labels), np.array(fold)


def _sklearn_tar(train_s, train_y, test_s, test_y, far):
    fpr, _tpr, thr = roc_curve(train_y, train_s, drop_intermediate=False)
    idx = np.flatnonzero(fpr <= far + 1e-12)[-1]  # fpr ascends: lowest threshold within budget
    t = thr[idx]
    return np.mean(test_s[test_y == 1] >= t), t


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("far", [1e-3, 1e-2, 0.1])
def test_tar_matches_sklearn_roc_curve_per_fold(seed, far):
    s, y, f = _synthetic(seed)
    res = kfold_verification(s, y, f, far=far)
    for i, fold in enumerate(np.unique(f)):
        tr, te = f != fold, f == fold
        tar, t = _sklearn_tar(s[tr], y[tr], s[te], y[te], far)
        assert res.far_thresholds[i] == pytest.approx(t)
        assert res.tar[i] == pytest.approx(tar)
        # the threshold really keeps the training FAR within budget
        neg = s[tr][y[tr] == 0]
        assert np.mean(neg >= res.far_thresholds[i]) <= far + 1e-12


def test_known_answers_separable_and_inseparable():
    # perfectly separable: every positive above every negative -> TAR 1, accuracy 1
    s = np.array([0.9, 0.8, 0.1, 0.2] * 4)
    y = np.array([1, 1, 0, 0] * 4)
    f = np.repeat(np.arange(4), 4)
    res = kfold_verification(s, y, f, far=1e-3)
    assert res.tar.tolist() == [1.0] * 4
    assert res.accuracy.tolist() == [1.0] * 4
    # identical score for everything: no threshold accepts positives without negatives
    res = kfold_verification(np.zeros(16), y, f, far=1e-3)
    assert res.tar.tolist() == [0.0] * 4
    assert res.accuracy.tolist() == [0.5] * 4


def test_far_threshold_edge_cases():
    s = np.array([0.5, 0.4, 0.3])
    y = np.array([1, 0, 0])
    assert far_threshold(s, y, 1e-3) == 0.5  # lowest score above the top negative
    assert math.isinf(far_threshold(np.array([0.2, 0.4]), np.array([1, 0]), 1e-3))
    assert far_threshold(s, y, 1.0) == 0.3  # every negative may be accepted
    with pytest.raises(ValueError):
        far_threshold(s, np.ones(3), 1e-3)


@pytest.mark.parametrize("seed", [3, 4])
def test_accuracy_threshold_is_a_brute_force_maximiser(seed):
    s, y, _ = _synthetic(seed, folds=1, n=200, sep=1.0)
    t = accuracy_threshold(s, y)
    acc = np.mean((s >= t) == (y == 1))
    grid = np.append(np.unique(s), np.inf)
    best = max(np.mean((s >= g) == (y == 1)) for g in grid)
    assert acc == pytest.approx(best)


def test_accuracy_uses_other_folds_and_single_fold_is_in_sample():
    s, y, f = _synthetic(5, folds=3, n=100, sep=1.5)
    res = kfold_verification(s, y, f)
    assert not res.in_sample
    for i, fold in enumerate(np.unique(f)):
        tr, te = f != fold, f == fold
        t = accuracy_threshold(s[tr], y[tr])
        assert res.acc_thresholds[i] == t
        assert res.accuracy[i] == pytest.approx(np.mean((s[te] >= t) == (y[te] == 1)))
    one = kfold_verification(s[f == 0], y[f == 0], f[f == 0])
    assert one.in_sample
    assert one.far_thresholds[0] == far_threshold(s[f == 0], y[f == 0], 1e-3)


def test_mean_std_over_folds():
    s, y, f = _synthetic(6)
    res = kfold_verification(s, y, f)
    m, sd = res.tar_mean_std()
    assert m == pytest.approx(np.mean(res.tar))
    assert sd == pytest.approx(np.std(res.tar))
    with pytest.raises(ValueError):
        kfold_verification(np.array([np.nan, 1.0]), np.array([1, 0]), np.array([0, 0]))
