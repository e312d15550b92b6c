from __future__ import annotations

import numpy as np
import pytest

from anonbench.data.images import read_rgb
from anonbench.data.lfw import LFW_FACE_BOX, sample_root
from anonbench.faces.analysis import FaceAnalyzer
from anonbench.faces.mask import ciagan_mask, ciagan_mask_polygon, iou
from anonbench.registry import EMBEDDERS


def test_mask_polygon_follows_jaw_and_brows():
    lm = np.zeros((68, 2), np.float32)
    lm[:17] = np.stack([np.linspace(10, 90, 17), 50 + 30 * np.sin(np.linspace(0, np.pi, 17))], 1)
    lm[19] = (30, 20)
    lm[24] = (70, 25)
    poly = ciagan_mask_polygon(lm)
    assert poly.shape == (19, 2)
    assert tuple(poly[0]) == (10, 20) and tuple(poly[-1]) == (90, 25)
    m = ciagan_mask(lm, 100, 100)
    assert m[60, 50] == 1 and m[10, 50] == 0  # face centre in, forehead out
    assert m[:19].sum() == 0


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_analysis_finds_faces_and_caches(tmp_path):
    from anonbench.cache import Cache

    img = read_rgb(sorted((sample_root() / "images").glob("*/*.jpg"))[0])
    an = FaceAnalyzer(cache=Cache(tmp_path))
    a = an(img)
    assert len(a) >= 1 and a.landmarks.shape[1:] == (68, 2)
    assert max(iou(tuple(b), LFW_FACE_BOX) for b in a.boxes) > 0.5
    # the analysis, and its detector's boxes for a recognizer with the same detector
    assert len(list(tmp_path.rglob("*.npz"))) == 2
    b = an(img)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_embedder_same_person_closer_and_fallback_box():
    emb = EMBEDDERS.create("dlib-resnet")
    root = sample_root() / "images"
    a1, a2 = sorted((root / "Abdullah_Gul").glob("*.jpg"))[:2]
    other = sorted((root / "Abel_Pacheco").glob("*.jpg"))[0]
    e, fb = emb.embed([read_rgb(p) for p in (a1, a2, other)], LFW_FACE_BOX)
    assert e.shape == (3, 128) and not fb.any()
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2]
    grey = np.full((250, 250, 3), 128, np.uint8)
    e, fb = emb.embed([grey], LFW_FACE_BOX)
    assert fb.tolist() == [True] and np.isfinite(e).all()
