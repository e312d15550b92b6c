"""Proxy-NCA and landmark attackers as TrainedAttackers: the crop around each image's reference
box, batched embedding, cached training, `anonbench train identifier`, and the landmark
attacker's flag for images without a face at the box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anonbench.api import TrainedAttacker
from anonbench.cache import Cache
from anonbench.data.celeba import CELEBA_FACE_BOX, load_celeba
from anonbench.data.images import read_rgb
from anonbench.errors import AnonbenchError
from anonbench.faces import pnca
from anonbench.faces.landmark_attacker import DRAWING_BOX, LandmarkAttacker
from anonbench.faces.pnca import ProxyNCAAttacker, face_crop, square_around, whole_image_box

SMALL = Path(__file__).parent / "fixtures" / "celeba_small"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small() -> tuple[list[np.ndarray], list[tuple[float, ...]], list[str]]:
    """celeba_small (18 images, 6 identities) with their dlib HOG boxes."""
    from anonbench.faces.analysis import FaceAnalyzer

    analyzer = FaceAnalyzer()
    images, boxes, labels = [], [], []
    for r in load_celeba(SMALL).records:
        img = read_rgb(r.path)
        box, found = pnca.centre_face_box(img, analyzer)
        assert found
        images.append(img)
        boxes.append(box)
        labels.append(r.identity)
    return images, boxes, labels


@pytest.fixture(scope="module")
def fitted(small, tmp_path_factory) -> tuple[ProxyNCAAttacker, str]:
    torch.set_num_threads(1)
    cache = str(tmp_path_factory.mktemp("cache"))
    att = ProxyNCAAttacker(epochs=3, batch_size=4)
    att.fit(*small, cache_dir=cache, quiet=True)
    return att, cache


def _padded(img: np.ndarray, x0: int, y0: int, s: int) -> np.ndarray:
    """The square [x0, x0 + s) x [y0, y0 + s) of the edge-padded image (reference)."""
    p = 2 * s
    big = np.pad(img, ((p, p), (p, p), (0, 0)), mode="edge")
    return big[y0 + p : y0 + p + s, x0 + p : x0 + p + s]


# --- the crop -----------------------------------------------------------------------------------


def test_crop_on_aligned_celeba_and_on_a_tight_crop(small):
    img = small[0][0]  # 218 x 178
    assert img.shape == (218, 178, 3)
    x0, y0, s = square_around(CELEBA_FACE_BOX)
    assert s == 180 and (x0, y0) == (1, 41)  # 2 x the box's larger side (90), on its centre
    full = face_crop(img, CELEBA_FACE_BOX, size=s)  # no resize: the square itself
    np.testing.assert_array_equal(full, _padded(img, x0, y0, s))  # bottom rows replicated

    # a tight 112 x 112 crop of the same face, the box moved with it: the same square, with
    # the parts outside the tight crop replicated from its edges
    ty, tx = 70, 33
    tight = np.ascontiguousarray(img[ty : ty + 112, tx : tx + 112])
    tbox = (46.0 - tx, 86.0 - ty, 135.0 - tx, 176.0 - ty)
    tx0, ty0, ts = square_around(tbox)
    assert (tx0, ty0, ts) == (x0 - tx, y0 - ty, s)
    crop = face_crop(tight, tbox, size=s)
    np.testing.assert_array_equal(crop, _padded(tight, tx0, ty0, s))
    inside = (slice(ty - y0, ty - y0 + 112), slice(tx - x0, tx - x0 + 112))
    np.testing.assert_array_equal(crop[inside], full[inside])

    small_crop = face_crop(tight, tbox)
    assert small_crop.shape == (pnca.INPUT_SIZE, pnca.INPUT_SIZE, 3)
    assert small_crop.dtype == np.uint8


def test_square_follows_integer_shifts_and_rejects_bad_boxes():
    for box in [(10.0, 20.0, 60.0, 90.0), (10.3, 20.7, 61.2, 80.1), CELEBA_FACE_BOX]:
        x0, y0, s = square_around(box)
        for dx, dy in [(1, 0), (-7, 13), (150, -40)]:
            moved = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
            assert square_around(moved) == (x0 + dx, y0 + dy, s)
    # the whole-image box crops the square bounding the image
    assert square_around(whole_image_box(218, 178)) == (-20, 0, 218)
    assert square_around(whole_image_box(112, 112)) == (0, 0, 112)
    for bad in [(5.0, 5.0, 5.0, 9.0), (0.0, 0.0, float("nan"), 4.0)]:
        with pytest.raises(ValueError):
            square_around(bad)


# --- the Proxy-NCA attacker ---------------------------------------------------------------------


def test_fit_and_embed(fitted, small):
    att, _ = fitted
    images, boxes, labels = small
    assert isinstance(att, TrainedAttacker)
    assert (att.name, att.training, att.dim) == ("pnca", "real", 128)
    assert att.net is not None and att.net.digest[:16] in att.version
    assert pnca.CROP_VERSION in att.version
    assert att.classes == sorted(set(labels))
    emb, fell_back = att.embed(images, boxes)
    assert emb.shape == (18, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert fell_back.dtype == bool and not fell_back.any()
    # one box for all images is accepted too
    one, _ = att.embed(images[:2], CELEBA_FACE_BOX)
    assert one.shape == (2, 128)
    assert att.embed([], [])[0].shape == (0, 128)


def test_adaptive_variant_and_keyword_construction():
    a = ProxyNCAAttacker(training="real+anonymized", epochs=1)
    assert (a.name, a.training) == ("pnca-adaptive", "real+anonymized")
    assert "untrained" in a.version and a.classes == []
    with pytest.raises(AnonbenchError, match="fit"):
        a.embed([np.zeros((8, 8, 3), np.uint8)], (1, 1, 6, 6))
    with pytest.raises(ValueError, match="training"):
        ProxyNCAAttacker(training="anonymized")
    with pytest.raises(TypeError):
        ProxyNCAAttacker("cpu")  # type: ignore[misc]


def test_batched_and_per_image_embeddings_agree(fitted, small):
    att, _ = fitted  # batch_size 4: 18 images in 5 batches, the last one partial
    images, boxes, _ = small
    batched, _ = att.embed(images, boxes)
    one_by_one = np.concatenate(
        [att.embed([im], [b])[0] for im, b in zip(images, boxes, strict=True)]
    )
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-5)


def test_box_moves_with_the_face(fitted, small):
    att, _ = fitted
    img = small[0][0]
    box = small[1][0]
    embs = []
    for dx, dy in [(10, 20), (100, 70)]:
        canvas = np.full((320, 300, 3), 127, np.uint8)
        canvas[dy : dy + 218, dx : dx + 178] = img
        moved = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
        embs.append(att.embed([canvas], [moved])[0][0])
        if dx == 100:  # the box left behind: another crop, another embedding
            stale = att.embed([canvas], [(box[0] + 10, box[1] + 20, box[2] + 10, box[3] + 20)])
    np.testing.assert_array_equal(embs[0], embs[1])
    assert float(embs[0] @ stale[0][0]) < 0.999


def test_cached_training_is_reused_and_keyed_by_boxes(fitted, small, monkeypatch):
    att, cache = fitted
    images, boxes, labels = small
    calls = []
    real_train = pnca.train_pnca
    monkeypatch.setattr(pnca, "train_pnca", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    again = ProxyNCAAttacker(epochs=3, batch_size=64)
    again.fit(images, boxes, labels, cache_dir=cache, quiet=True)
    assert calls == [] and again.version == att.version
    np.testing.assert_allclose(
        again.embed(images, boxes)[0], att.embed(images, boxes)[0], atol=1e-6
    )
    assert len(list((Path(cache) / "pnca").glob("*.pt"))) == 1

    shifted = [(b[0] + 2, b[1], b[2] + 2, b[3]) for b in boxes]  # other boxes: trained anew
    other = ProxyNCAAttacker(epochs=1)
    other.fit(images, shifted, labels, cache_dir=cache, quiet=True)
    assert calls == [1] and other.version != att.version


def test_checkpoint_given_fit_is_a_noop(fitted, small, tmp_path, monkeypatch):
    att, _ = fitted
    assert att.net is not None
    path = tmp_path / "given.pt"
    key = pnca.training_key(small[0], small[2], att.config, small[1])
    ckpt = torch.load(Path(fitted[1]) / "pnca" / f"{key[:32]}.pt", weights_only=True)
    torch.save(ckpt, path)
    monkeypatch.setattr(pnca, "train_pnca", lambda *a, **k: pytest.fail("trained"))
    given = ProxyNCAAttacker(checkpoint=str(path), training="real+anonymized")
    given.fit(*small, cache_dir=str(tmp_path / "c"), quiet=True)
    assert given.version.endswith(att.net.digest[:16]) and given.classes == att.classes
    old = dict(ckpt, config={k: v for k, v in ckpt["config"].items() if k != "crop"})
    torch.save(old, path)  # trained with the old CelebA-only crop: refused, not reused
    with pytest.raises(AnonbenchError, match="retrain"):
        ProxyNCAAttacker(checkpoint=str(path))
    with pytest.raises(AnonbenchError, match="not found"):
        ProxyNCAAttacker(checkpoint=str(tmp_path / "missing.pt"))


def test_train_identifier_command(tmp_path):
    from anonbench.cli import main

    out = tmp_path / "ident"
    args = ["--data", f"celeba:{SMALL}", "--out", str(out), "--epochs", "1"]
    assert main(["train", "identifier", *args, "--cache-dir", str(tmp_path / "c")]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["images_without_face_used_whole"] == 0
    assert cfg["config"]["crop"] == pnca.CROP_VERSION
    att = ProxyNCAAttacker(checkpoint=str(out / "pnca.pt"))
    assert set(att.classes).isdisjoint(cfg["test_identities"])
    # no face: the image is used whole
    blank = np.full((60, 40, 3), 200, np.uint8)
    from anonbench.faces.analysis import FaceAnalyzer

    assert pnca.centre_face_box(blank, FaceAnalyzer()) == (whole_image_box(60, 40), False)


# --- the landmark attacker ----------------------------------------------------------------------


def test_landmark_attacker_flags_faceless_images(small, tmp_path):
    images, boxes, labels = small
    att = LandmarkAttacker(epochs=2)
    assert isinstance(att, TrainedAttacker) and att.training == "real"
    assert "untrained" in att.version
    att.fit(images, boxes, labels, cache_dir=str(tmp_path), quiet=True)
    assert att.fit_info == {"train_images": 18, "train_images_without_face": 0}
    assert att.net is not None and att.net.digest[:16] in att.version
    assert isinstance(att.analyzer.cache, Cache) and att.analyzer.cache.enabled

    blank = np.full((218, 178, 3), 127, np.uint8)
    far = (0.0, 0.0, 30.0, 30.0)  # a box where there is no face
    emb, fell_back = att.embed([images[0], blank, images[1]], [boxes[0], boxes[0], far])
    assert fell_back.tolist() == [False, True, True]
    assert np.linalg.norm(emb[0]) == pytest.approx(1, abs=1e-5)
    assert not emb[1:].any()  # zero vectors: never a hit

    drawing = att.drawing(images[0], boxes[0])
    assert drawing is not None and drawing.shape == (218, 178, 3)
    # the drawing's lines lie inside its crop square (rows 40-217, all columns)
    rows = np.flatnonzero((drawing != 255).any(axis=(1, 2)))
    _, y0, s = square_around(DRAWING_BOX)
    assert y0 <= rows.min() and rows.max() < y0 + s
