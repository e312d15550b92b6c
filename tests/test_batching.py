"""Batched evaluator calls give what per-image calls give (CPU), on images of mixed sizes, and
the cached batched functions compute only their misses.

Tolerance: scores and embeddings to 1e-5 absolute. Boxes and landmarks are pixel coordinates
of up to a few hundred: a batched convolution may round differently from a single-image one
(measured: network outputs within 5e-6), and float32 coordinates near 250 are 1.5e-5 apart, so
they are compared to 1e-5 of the image's larger side.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from anonbench.cache import Cache, array_digest
from anonbench.data.celeba import CELEBA_FACE_BOX
from anonbench.data.images import read_rgb
from anonbench.data.lfw import LFW_FACE_BOX, sample_root
from anonbench.faces.cached import (
    cached_boxes,
    cached_detections,
    cached_embedding,
    cached_embeddings,
)
from anonbench.faces.mask import reference_boxes
from anonbench.registry import DETECTORS, EMBEDDERS

FIXTURES = Path(__file__).parent / "fixtures"
MFN_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/models/mobilefacenet/068.ckpt"
TOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images() -> tuple[list[np.ndarray], list[tuple[float, float, float, float]]]:
    """Three sizes, out of order: LFW 250x250, CelebA 178x218, an LFW crop 190x235, and a
    face-free grey image; with each image's reference box (the last LFW one points away from
    its face, so the embedders fall back on it)."""
    lfw = [read_rgb(p) for p in sorted((sample_root() / "images").glob("*/*.jpg"))[:5]]
    celeba = [read_rgb(p) for p in sorted((FIXTURES / "celeba_tiny/img_align_celeba").glob("*"))]
    assert len(lfw) == 5 and len(celeba) == 4
    crop = np.ascontiguousarray(lfw[1][10:200, 5:240])
    grey = np.full((250, 250, 3), 128, np.uint8)
    corner = (0.0, 0.0, 40.0, 40.0)
    shifted = (LFW_FACE_BOX[0] - 5, LFW_FACE_BOX[1] - 10, LFW_FACE_BOX[2] - 5, LFW_FACE_BOX[3] - 10)
    images = [lfw[0], celeba[0], lfw[1], crop, celeba[1], lfw[2], grey, celeba[2], lfw[3]]
    images += [celeba[3], lfw[4]]
    boxes = [LFW_FACE_BOX, CELEBA_FACE_BOX, LFW_FACE_BOX, shifted, CELEBA_FACE_BOX, corner]
    boxes += [LFW_FACE_BOX, CELEBA_FACE_BOX, LFW_FACE_BOX, CELEBA_FACE_BOX, LFW_FACE_BOX]
    return images, boxes


IMAGES, BOXES = _images()
GREY, AWAY = 6, 5  # the face-free image; the image whose reference box misses its face


def assert_same_faces(batched, single, images) -> float:
    """Returns the largest absolute difference (pixels or score) seen."""
    assert len(batched) == len(single) == len(images)
    worst = 0.0
    for b, s, img in zip(batched, single, images, strict=True):
        assert len(b) == len(s), ([f.box for f in b], [f.box for f in s])
        side = max(img.shape[:2])
        for fb, fs in zip(b, s, strict=True):
            np.testing.assert_allclose(fb.box, fs.box, rtol=0, atol=TOL * side)
            assert abs(fb.score - fs.score) <= TOL
            worst = max(worst, float(np.abs(np.subtract(fb.box, fs.box)).max()))
            assert (fb.landmarks is None) == (fs.landmarks is None)
            if fb.landmarks is not None:
                np.testing.assert_allclose(fb.landmarks, fs.landmarks, rtol=0, atol=TOL * side)
                worst = max(worst, float(np.abs(fb.landmarks - fs.landmarks).max()))
    return worst


# -- detectors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["retinaface", "mtcnn", "dlib-hog"])
def test_detect_batch_matches_detect_on_mixed_sizes(name):
    det = DETECTORS.create(name, device="cpu", batch_size=2)  # several chunks per size
    single = [det.detect(img) for img in IMAGES]
    batched = det.detect_batch(IMAGES)
    assert sum(len(f) for f in single) >= 10  # faces were found, so something was compared
    assert not batched[GREY] and not single[GREY]
    assert_same_faces(batched, single, IMAGES)
    assert det.detect_batch([]) == []


def test_retinaface_groups_equal_sizes_into_batches():
    det = DETECTORS.create("retinaface", batch_size=2)
    shapes: list[tuple[int, ...]] = []
    det.net.register_forward_hook(lambda m, inp, out: shapes.append(tuple(inp[0].shape)))
    det.detect_batch(IMAGES)
    # 250x250: 6 images -> 2 + 2 + 2; 218x178: 4 -> 2 + 2; the crop alone
    assert sorted(shapes) == sorted(
        [(2, 3, 250, 250)] * 3 + [(2, 3, 218, 178)] * 2 + [(1, 3, 190, 235)]
    )


def test_detectors_and_landmarker_accept_device_and_batch_size():
    from anonbench.registry import LANDMARKERS

    for name in ["dlib-hog", "dlib-mmod", "retinaface", "mtcnn"]:
        det = DETECTORS.create(name, device="cpu", batch_size=8)
        assert det.batch_size == 8 and hasattr(det, "detect_batch")
    assert LANDMARKERS.create("dlib-68", device="cuda", batch_size=8).device == "cpu"
    # dlib runs on the CPU whatever it is asked: no error, nothing recorded
    assert DETECTORS.create("dlib-hog", device="cuda").device == "cpu"
    assert EMBEDDERS.create("dlib-resnet", device="cuda").device == "cpu"
    with pytest.raises(ValueError, match="batch_size"):
        DETECTORS.create("retinaface", batch_size=0)


# -- embedders -----------------------------------------------------------------------------------
def test_reference_boxes():
    assert reference_boxes(LFW_FACE_BOX, 3) == [tuple(map(float, LFW_FACE_BOX))] * 3
    two = [(1, 2, 3, 4), (5, 6, 7, 8)]
    assert reference_boxes(two, 2) == [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)]
    assert reference_boxes(np.array(two * 2, np.float32), 4)[3] == (5.0, 6.0, 7.0, 8.0)
    assert reference_boxes([], 0) == []
    with pytest.raises(ValueError, match="one per image"):
        reference_boxes(two, 3)


def check_embedder(emb) -> float:
    """Batched embed with per-image boxes == embed one image at a time; returns the largest
    absolute difference."""
    e, fb = emb.embed(IMAGES, BOXES)
    assert e.shape == (len(IMAGES), emb.dim) and e.dtype == np.float32 and fb.dtype == bool
    one = [emb.embed([img], box) for img, box in zip(IMAGES, BOXES, strict=True)]
    e1 = np.concatenate([o[0] for o in one])
    fb1 = np.concatenate([o[1] for o in one])
    np.testing.assert_array_equal(fb, fb1)
    np.testing.assert_allclose(e, e1, rtol=0, atol=TOL)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    # the grey image and the box pointing away from the face fall back; real faces do not
    assert fb[GREY] and fb[AWAY] and not fb[0] and not fb[1]
    # a single box still means "this box for every image"
    lfw = [img for img in IMAGES if img.shape[:2] == (250, 250)]
    es, fbs = emb.embed(lfw, LFW_FACE_BOX)
    el, fbl = emb.embed(lfw, [LFW_FACE_BOX] * len(lfw))
    np.testing.assert_allclose(es, el, rtol=0, atol=TOL)
    np.testing.assert_array_equal(fbs, fbl)
    e0, fb0 = emb.embed([], [])
    assert e0.shape == (0, emb.dim) and fb0.shape == (0,)
    return float(np.abs(e - e1).max())


def test_dlib_resnet_batched_matches_per_image():
    check_embedder(EMBEDDERS.create("dlib-resnet", batch_size=4))


@pytest.mark.shared
def test_mobilefacenet_batched_matches_per_image():
    if not MFN_WEIGHTS.is_file():
        pytest.skip(f"MobileFaceNet weights not present ({MFN_WEIGHTS}); they are not shipped")
    check_embedder(EMBEDDERS.create("mobilefacenet", weights=str(MFN_WEIGHTS), batch_size=4))


@pytest.fixture(scope="module")
def random_facenet_file(tmp_path_factory) -> Path:
    """Random InceptionResnetV1 weights laid out as the VGGFace2 release file."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    state["logits.weight"] = torch.zeros(8631, 512)
    state["logits.bias"] = torch.zeros(8631)
    path = tmp_path_factory.mktemp("facenet") / "random-vggface2.pt"
    torch.save(state, path)
    return path


def test_facenet_batched_matches_per_image_random_weights(random_facenet_file):
    """The plumbing (MTCNN batches, crops, chunked forwards) with random weights."""
    check_embedder(
        EMBEDDERS.create("facenet-vggface2", weights=str(random_facenet_file), batch_size=4)
    )


def test_facenet_batched_matches_per_image_real_weights():
    from anonbench.errors import MissingWeightsError

    try:
        emb = EMBEDDERS.create("facenet-vggface2", batch_size=4)
    except MissingWeightsError as e:
        pytest.skip(f"FaceNet VGGFace2 weights not available: {e}")
    check_embedder(emb)


# -- cached functions --------------------------------------------------------------------------
class Counting:
    """Wraps an evaluator and counts the images its batched calls receive."""

    def __init__(self, inner) -> None:
        self.inner, self.calls, self.images = inner, 0, 0
        self.name, self.version = inner.name, inner.version
        self.dim = getattr(inner, "dim", None)

    def detect_batch(self, images):
        self.calls, self.images = self.calls + 1, self.images + len(images)
        return self.inner.detect_batch(images)

    def embed(self, images, boxes):
        self.calls, self.images = self.calls + 1, self.images + len(images)
        return self.inner.embed(images, boxes)


def test_cached_detections_compute_only_misses(tmp_path):
    det = Counting(DETECTORS.create("retinaface", batch_size=4))
    cache = Cache(tmp_path)
    expected = [
        np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        for faces in det.inner.detect_batch(IMAGES)
    ]
    first = cached_detections(cache, det, IMAGES[:6])
    assert (det.calls, det.images) == (1, 6)
    for got, want in zip(first, expected[:6], strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.float32 and got.shape[1] == 4
    # all of them again, with digests given: only the 5 new ones run, in one call
    got = cached_detections(cache, det, IMAGES, [array_digest(i) for i in IMAGES])
    assert (det.calls, det.images) == (2, 11)
    for g, w in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, w)
    assert cached_detections(cache, det, IMAGES)[6].shape == (0, 4)  # grey: no face
    assert (det.calls, det.images) == (2, 11)
    # the one-image wrapper reads the same entries
    np.testing.assert_array_equal(cached_boxes(cache, det, IMAGES[3]), expected[3])
    assert det.calls == 2
    # an image given twice in one call runs once
    fresh = Counting(det.inner)
    twice = cached_detections(Cache(tmp_path / "other"), fresh, [IMAGES[0], IMAGES[0]])
    assert fresh.images == 1 and np.array_equal(twice[0], twice[1])
    with pytest.raises(ValueError, match="digests"):
        cached_detections(cache, det, IMAGES, ["x"])


def test_cached_embeddings_compute_only_misses_and_key_on_the_box(tmp_path):
    emb = Counting(EMBEDDERS.create("dlib-resnet"))
    cache = Cache(tmp_path)
    want_e, want_fb = emb.inner.embed(IMAGES, BOXES)
    e, fb = cached_embeddings(cache, emb, IMAGES[:4], BOXES[:4])
    assert (emb.calls, emb.images) == (1, 4)
    e, fb = cached_embeddings(cache, emb, IMAGES, BOXES)
    assert (emb.calls, emb.images) == (2, 11)
    assert e.dtype == np.float32 and e.shape == (len(IMAGES), 128) and fb.dtype == bool
    np.testing.assert_array_equal(e, want_e)
    np.testing.assert_array_equal(fb, want_fb)
    cached_embeddings(cache, emb, IMAGES, BOXES)
    assert emb.calls == 2  # all hits
    # the box is part of the key, rounded to 0.1 px: a nudge of 0.01 px hits, another box misses
    nudged = [(b[0] + 0.01, b[1], b[2], b[3] - 0.01) for b in BOXES]
    cached_embeddings(cache, emb, IMAGES, nudged)
    assert emb.calls == 2
    corner = (0.0, 0.0, 40.0, 40.0)
    e2, fb2 = cached_embeddings(cache, emb, IMAGES[:1], [corner])
    assert (emb.calls, emb.images) == (3, 12) and fb2.tolist() == [True]
    assert not np.allclose(e2[0], e[0])
    # the one-image wrapper shares the entries
    v, f = cached_embedding(cache, emb, IMAGES[1], BOXES[1], digest=array_digest(IMAGES[1]))
    np.testing.assert_array_equal(v, want_e[1])
    assert f is bool(want_fb[1]) and emb.calls == 3


def test_cached_functions_with_the_cache_off_compute_everything(tmp_path):
    emb = Counting(EMBEDDERS.create("dlib-resnet"))
    cache = Cache(tmp_path, enabled=False)
    cached_embeddings(cache, emb, IMAGES[:3], BOXES[:3])
    cached_embeddings(cache, emb, IMAGES[:3], BOXES[:3])
    assert (emb.calls, emb.images) == (2, 6)
    assert not os.listdir(tmp_path)
