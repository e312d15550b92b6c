"""Face verification metrics over k folds (LFW View 2 style).

Convention (the same as scikit-learn's roc_curve): a pair is accepted when score >= threshold,
and thresholds are chosen among the training scores (or +inf, accepting nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def far_threshold(scores: np.ndarray, labels: np.ndarray, far: float) -> float:
    """Lowest threshold (a score in `scores`, or +inf) whose false accept rate on the
    mismatched pairs (label 0) is <= far."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    neg = np.sort(scores[labels == 0])[::-1]
    if len(neg) == 0:
        raise ValueError("no mismatched pairs to set a FAR threshold on")
    k = math.floor(far * len(neg) + 1e-9)  # negatives that may be accepted
    if k >= len(neg):
        return float(scores.min())
    v = neg[k]  # any threshold <= v accepts k + 1 negatives
    above = scores[scores > v]
    return float(above.min()) if len(above) else math.inf


def accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising accuracy: among maximisers (scores or +inf) the smallest, moved
    halfway down to the next lower score so that it does not sit on a training sample."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    cand = np.unique(scores)  # ascending
    cand = np.append(cand, math.inf)
    # accepted positives and rejected negatives for threshold cand[j], via sorted counts
    pos = np.sort(scores[labels])
    neg = np.sort(scores[~labels])
    tp = len(pos) - np.searchsorted(pos, cand, side="left")
    tn = np.searchsorted(neg, cand, side="left")
    acc = (tp + tn) / len(scores)
    j = int(np.flatnonzero(acc == acc.max())[0])
    if j == 0 or math.isinf(cand[j]):
        return float(cand[j])
    return float((cand[j] + cand[j - 1]) / 2)


@dataclass
class VerificationResult:
    folds: np.ndarray  # fold ids, in order
    tar: np.ndarray  # TAR at the FAR threshold, per held-out fold
    far_thresholds: np.ndarray
    accuracy: np.ndarray  # accuracy per held-out fold
    acc_thresholds: np.ndarray
    in_sample: bool  # True with a single fold: thresholds chosen on the fold itself
    far: float

    @staticmethod
    def _ms(x: np.ndarray) -> tuple[float, float]:
        # population std over folds, as in the usual LFW evaluation scripts
        return float(np.mean(x)), float(np.std(x))

    def tar_mean_std(self) -> tuple[float, float]:
        return self._ms(self.tar)

    def accuracy_mean_std(self) -> tuple[float, float]:
        return self._ms(self.accuracy)


def kfold_verification(
    scores: np.ndarray, labels: np.ndarray, folds: np.ndarray, far: float = 1e-3
) -> VerificationResult:
    """For each fold, thresholds come from the other folds (from the fold itself when there is
    only one) and are applied to the held-out fold."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(int)
    folds = np.asarray(folds)
    if not (len(scores) == len(labels) == len(folds)):
        raise ValueError("scores, labels and folds differ in length")
    if np.isnan(scores).any():
        raise ValueError("NaN similarity scores")
    ids = np.unique(folds)
    in_sample = len(ids) == 1
    tar, fth, acc, ath = [], [], [], []
    for f in ids:
        test = folds == f
        train = test if in_sample else ~test
        t_far = far_threshold(scores[train], labels[train], far)
        t_acc = accuracy_threshold(scores[train], labels[train])
        s, y = scores[test], labels[test]
        pos = s[y == 1]
        tar.append(float(np.mean(pos >= t_far)) if len(pos) else math.nan)
        acc.append(float(np.mean((s >= t_acc) == (y == 1))))
        fth.append(t_far)
        ath.append(t_acc)
    return VerificationResult(
        ids, np.array(tar), np.array(fth), np.array(acc), np.array(ath), in_sample, far
    )


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score taken as the threshold, highest first, after the
    point (0, 0) of +inf: scikit-learn's roc_curve with drop_intermediate=False."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        raise ValueError("the ROC needs both matched and mismatched pairs")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    # the last position of each run of equal scores: tied pairs enter together
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC (trapezoids, so a tied positive-negative pair counts one half): the
    probability that a matched pair scores above a mismatched one."""
    fpr, tpr = roc_points(scores, labels)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> float:
    """The rate where the false accept rate equals the false reject rate (1 - TPR), read
    where the ROC's polyline crosses FAR = FRR (linear between its two neighbouring points)."""
    fpr, tpr = roc_points(scores, labels)
    d = (1.0 - tpr) - fpr  # FRR - FAR: 1 at (0, 0), falls to -1 at (1, 1)
    i = int(np.flatnonzero(d <= 0)[0])  # exists: the last point is (1, 1)
    if d[i] == 0:
        return float(fpr[i])
    t = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
