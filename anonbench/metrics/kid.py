"""Kernel Inception Distance (KID, Binkowski et al., ICLR 2018), as torch-fidelity 0.3 computes
it, on the same Inception pool3 features as FID (anonbench.metrics.fid).

Kernel: the cubic polynomial k(x, y) = (x . y / d + 1)^3, d = the feature dimension
(torch-fidelity's defaults kid_degree=3, kid_gamma=None -> 1/d, kid_coef0=1).

Estimator (torch-fidelity `kid_features_to_metric` / `mmd2(..., mmd_est="unbiased")`): for each
of `subsets` subsets (default 100), m = `subset_size` rows (default 1000) are drawn without
replacement from each set with one `np.random.RandomState(seed)` (first set, then second,
per subset), and

    MMD^2 = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
            - 2 sum_{i, j} k(x_i, y_j) / m^2

(the cross term keeps its diagonal, as torch-fidelity does). KID = mean over subsets, std =
population std over subsets (np.std). torch-fidelity refuses sets smaller than subset_size;
here m = min(subset_size, N1, N2) and the result says so: when m equals both set sizes, every
subset is the whole set, the value is that one estimate and its std is 0 (no spread to
report). Unlike FID, KID is unbiased at small N, but it can be slightly negative: the raw
value is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUBSETS = 100
SUBSET_SIZE = 1000


@dataclass(frozen=True)
class KIDResult:
    kid: float
    std: float
    n1: int
    n2: int
    subset_size: int
    subsets: int
    notes: tuple[str, ...] = ()


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x y^T / d + 1)^3 for rows of x and y (N x d, M x d)."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """torch-fidelity's unbiased MMD^2 of two equal-size samples (m x d each)."""
    m = x.shape[0]
    if m < 2 or y.shape[0] != m:
        raise ValueError(f"need two samples of equal size >= 2, got {x.shape} and {y.shape}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sxx = kxx.sum() - np.trace(kxx)
    syy = kyy.sum() - np.trace(kyy)
    return float((sxx + syy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kid_from_features(
    f1: np.ndarray,
    f2: np.ndarray,
    *,
    subsets: int = SUBSETS,
    subset_size: int = SUBSET_SIZE,
    seed: int = 0,
) -> KIDResult:
    """KID (mean and std of the unbiased MMD^2 over random subsets) between two feature sets."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"need N1 x d and N2 x d features, got {f1.shape} and {f2.shape}")
    n1, n2 = f1.shape[0], f2.shape[0]
    m = min(subset_size, n1, n2)
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {n1} and {n2}")
    notes = []
    if m < subset_size:
        notes.append(f"KID: subsets of {m} (< {subset_size}: the smaller set's size)")
    if m == n1 == n2:
        # every subset is a permutation of the whole set: the same estimate each time
        value = mmd2_unbiased(f1, f2)
        notes.append("KID: every subset is the whole set: std over subsets is 0")
        return KIDResult(value, 0.0, n1, n2, m, subsets, tuple(notes))
    rng = np.random.RandomState(seed)
    vals = np.empty(subsets, np.float64)
    for i in range(subsets):
        a = f1[rng.choice(n1, m, replace=False)]
        b = f2[rng.choice(n2, m, replace=False)]
        vals[i] = mmd2_unbiased(a, b)
    return KIDResult(float(vals.mean()), float(vals.std()), n1, n2, m, subsets, tuple(notes))
