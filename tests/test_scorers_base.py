"""The scorer contract's data types on synthetic passes (no images, no dlib)."""

from __future__ import annotations

import numpy as np
import pytest

from anonbench.data.records import ImageRecord
from anonbench.scorers.base import ImageAnalysis, Needs, Pass, Scorer


def test_needs_union_keeps_first_occurrence_order():
    a = Needs(("dlib-hog",), ("dlib-resnet",))
    b = Needs(("retinaface", "dlib-hog"), (), ("inception",))
    u = Needs.union([a, b, Needs()])
    assert u == Needs(("dlib-hog", "retinaface"), ("dlib-resnet",), ("inception",))


def _pass() -> Pass:
    recs = [ImageRecord(f"k{i}", f"/none/{i}.jpg", f"id{i % 2}") for i in range(3)]
    images = {
        r.key: ImageAnalysis(
            None,
            {"d": np.array([[1, 2, 3, 4]], np.float32)},
            {"e": (np.full(2, i, np.float32), i == 1)},
        )
        for i, r in enumerate(recs)
    }
    boxes = {r.key: ((0.0, 0.0, 1.0, 1.0), r.key == "k2") for r in recs}
    return Pass("real", recs, images, boxes)


def test_pass_accessors_and_subset():
    p = _pass()
    assert p.keys == ["k0", "k1", "k2"] and p.identities == ["id0", "id1", "id0"]
    assert p.detections("d", "k0") == [(1.0, 2.0, 3.0, 4.0)]
    e, fb = p.embeddings("e")
    assert e.shape == (3, 2) and fb.tolist() == [False, True, False]
    assert p.fell_back("k2") and not p.fell_back("k0")
    s = p.subset(["k2", "k0"])
    assert s.keys == ["k0", "k2"] and s.boxes is p.boxes
    with pytest.raises(RuntimeError, match="synthetic"):
        p.load("k0")


def test_scorer_defaults():
    s = Scorer()
    assert s.needs() == Needs() and s.per_item() == []
    with pytest.raises(NotImplementedError):
        s.score(_pass(), None)  # type: ignore[arg-type]
