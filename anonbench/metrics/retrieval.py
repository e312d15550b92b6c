"""Identification metrics: Recall@1 with a gallery that excludes the query's own source image,
and bootstrap intervals (optionally resampling groups such as identities)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def nearest_neighbour_hits(
    query: np.ndarray,
    query_ids: Sequence[str],
    query_src: Sequence[str],
    gallery: np.ndarray,
    gallery_ids: Sequence[str],
    gallery_keys: Sequence[str],
    chunk: int = 1024,
) -> np.ndarray:
    """For each query (L2-normalised rows), whether its most similar gallery item (cosine),
    the query's own source image excluded, has the query's identity. Returns bool array."""
    g_ids = np.asarray(gallery_ids)
    key_pos = {k: i for i, k in enumerate(gallery_keys)}
    hits = np.zeros(len(query), bool)
    for s in range(0, len(query), chunk):
        sims = query[s : s + chunk] @ gallery.T
        for j in range(sims.shape[0]):
            own = key_pos.get(query_src[s + j])
            if own is not None:
                sims[j, own] = -np.inf
        nn = sims.argmax(axis=1)
        hits[s : s + chunk] = g_ids[nn] == np.asarray(query_ids[s : s + chunk])
    return hits


def bootstrap_ci(
    values: np.ndarray,
    groups: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`; with `groups`, whole groups are
    resampled (a cluster bootstrap: images of one identity are not independent)."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if groups is None:
        idx = rng.integers(0, len(values), (n_boot, len(values)))
        means = values[idx].mean(axis=1)
    else:
        g = np.asarray(groups)
        uniq, inv = np.unique(g, return_inverse=True)
        sums = np.bincount(inv, weights=values, minlength=len(uniq))
        counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
        pick = rng.integers(0, len(uniq), (n_boot, len(uniq)))
        means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return float(lo), float(hi)
