"""MetricResult on synthetic values: its constructors and the row dict it gives."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from anonbench.metrics.result import MetricResult
from anonbench.metrics.retrieval import bootstrap_ci


def _synthetic(seed: int = 3) -> tuple[np.ndarray, list[str]]:
    """Hits (0/100) of 40 queries over 8 identities, identity-correlated."""
    rng = np.random.default_rng(seed)
    ids = [f"id{i % 8}" for i in range(40)]
    p = {f"id{i}": rng.uniform() for i in range(8)}
    hits = np.array([100.0 * (rng.uniform() < p[i]) for i in ids])
    return hits, ids


@pytest.mark.parametrize("seed", [0, 7])
def test_from_values_is_the_existing_cluster_bootstrap(seed):
    hits, ids = _synthetic()
    r = MetricResult.from_values("recall_at_1", "dlib-resnet", hits, groups=ids, seed=seed)
    assert r.ci == bootstrap_ci(hits, groups=ids, seed=seed)
    assert r.value == float(hits.mean()) and r.n == 40 and r.std is None and r.note is None
    plain = MetricResult.from_values("detection_rate", "dlib-hog", list(hits), seed=seed)
    assert plain.ci == bootstrap_ci(hits, seed=seed)
    assert plain.ci != r.ci  # resampling identities, not images, gives another interval


def test_from_values_empty_is_nan_with_n_zero():
    r = MetricResult.from_values("face_kept", "dlib-resnet", [], seed=0, note="")
    assert math.isnan(r.value) and r.n == 0 and r.note is None
    assert r.ci is not None and all(math.isnan(x) for x in r.ci)


def test_count_and_unavailable():
    c = MetricResult.count("faces_missed", "dlib-hog", 3, 18)
    assert (c.value, c.n, c.ci, c.std) == (3.0, 18, None, None)
    u = MetricResult.unavailable("recall_at_1", "mobilefacenet", "weights not found")
    assert math.isnan(u.value) and u.n == 0 and u.note == "unavailable: weights not found"


def test_to_row_gives_todays_row_fields():
    hits, ids = _synthetic()
    lo, hi = bootstrap_ci(hits, groups=ids, seed=0)
    row = MetricResult.from_values("recall_at_1", "pnca", hits, ids, seed=0, note="x").to_row()
    want = {"metric": "recall_at_1", "evaluator": "pnca", "value": float(hits.mean())}
    assert row == want | {"ci_low": lo, "ci_high": hi, "n": 40, "note": "x"}
    count = MetricResult.count("embedder_no_face", "dlib-resnet", 2, 6).to_row()
    assert count == {
        "metric": "embedder_no_face",
        "evaluator": "dlib-resnet",
        "value": 2.0,
        "n": 6,
        "note": None,
    }
    folds = MetricResult("accuracy", "dlib-resnet", 0.96, 200, std=0.01, note="2 folds")
    assert folds.to_row()["std"] == 0.01 and "ci_low" not in folds.to_row()


def test_frozen():
    r = MetricResult.count("faces_missed", "dlib-hog", 0, 6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 1.0  # type: ignore[misc]
