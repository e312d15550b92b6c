"""Recall@1 and bootstrap intervals against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from anonbench.metrics.retrieval import bootstrap_ci, nearest_neighbour_hits


def _norm(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_at_1_matches_sklearn_neighbours(seed):
    rng = np.random.default_rng(seed)
    ids = [str(i) for i in rng.integers(0, 15, 120)]
    centres = _norm(rng.normal(size=(15, 16)))
    gallery = _norm(np.stack([centres[int(i)] for i in ids]) + rng.normal(0, 0.6, (120, 16)))
    keys = [f"g{i}" for i in range(120)]
    query = _norm(gallery + rng.normal(0, 0.3, gallery.shape))
    hits = nearest_neighbour_hits(query, ids, keys, gallery, ids, keys, chunk=7)
    # independent: brute-force neighbours by Euclidean distance on unit vectors (same order
    # as cosine), asking for 2 and skipping the query's own source image
    nn = NearestNeighbors(n_neighbors=2, algorithm="brute").fit(gallery)
    _, idx = nn.kneighbors(query)
    ref = []
    for j in range(len(query)):
        cand = next(i for i in idx[j] if i != j)
        ref.append(ids[cand] == ids[j])
    assert hits.tolist() == ref
    assert 0 < hits.mean() < 1


def test_own_source_image_is_excluded():
    g = np.eye(3)
    # the query sits next to its own source image k0 (identity a); without the exclusion k0
    # would be a trivial hit, with it the nearest is k1 (identity b)
    q = np.array([[1.0, 0.2, 0.0]])
    q /= np.linalg.norm(q)
    assert nearest_neighbour_hits(
        q, ["a"], ["k0"], g, ["a", "b", "a"], ["k0", "k1", "k2"]
    ).tolist() == [False]
    assert nearest_neighbour_hits(
        q, ["a"], ["kx"], g, ["a", "b", "a"], ["k0", "k1", "k2"]
    ).tolist() == [True]  # not its own source: k0 counts


def test_bootstrap_interval_properties():
    rng = np.random.default_rng(0)
    v = (rng.random(400) < 0.3).astype(float)
    lo, hi = bootstrap_ci(v, seed=1)
    assert lo < v.mean() < hi
    # the normal approximation of a proportion's 95% interval, as an independent check
    se = np.sqrt(v.mean() * (1 - v.mean()) / len(v))
    assert lo == pytest.approx(v.mean() - 1.96 * se, abs=0.015)
    assert hi == pytest.approx(v.mean() + 1.96 * se, abs=0.015)
    assert bootstrap_ci(v, seed=1) == (lo, hi)  # seeded
    # grouped: 10 identities with perfectly correlated outcomes -> a much wider interval
    groups = [str(i % 10) for i in range(400)]
    vg = np.array([float(int(g) < 3) for g in groups])
    glo, ghi = bootstrap_ci(vg, groups=groups, seed=1)
    nlo, nhi = bootstrap_ci(vg, seed=1)
    assert ghi - glo > 3 * (nhi - nlo)
    assert np.isnan(bootstrap_ci(np.array([]))[0])
