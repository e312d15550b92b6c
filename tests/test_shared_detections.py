"""One detection per original: a recognizer whose detector is the analysis' detector reads the
analysis' boxes from the cache instead of detecting the original again (issue 21)."""

from __future__ import annotations

import numpy as np

from anonbench.cache import Cache
from anonbench.data.images import read_rgb
from anonbench.data.lfw import LFW_FACE_BOX, sample_root
from anonbench.faces.analysis import FaceAnalyzer
from anonbench.faces.cached import cached_embeddings
from anonbench.faces.dlib_faces import DlibResNetEmbedder


def _images(n: int) -> list[np.ndarray]:
    return [read_rgb(p) for p in sorted((sample_root() / "images").glob("*/*.jpg"))[:n]]


def _counting(emb: DlibResNetEmbedder) -> list[int]:
    calls = [0]
    detect = emb.detector.detect

    def counted(image):
        calls[0] += 1
        return detect(image)

    emb.detector.detect = counted  # type: ignore[method-assign]
    return calls


def test_an_analysed_original_is_not_detected_again(tmp_path):
    imgs = _images(3)
    cache = Cache(tmp_path)
    analyzer = FaceAnalyzer(cache=cache)
    boxes = []
    for im in imgs:
        a = analyzer(im)
        boxes.append(tuple(float(v) for v in a.boxes[0]) if len(a) else LFW_FACE_BOX)
    emb = DlibResNetEmbedder()
    calls = _counting(emb)
    got, fb = cached_embeddings(cache, emb, imgs, boxes)
    assert calls[0] == 0
    # the same descriptors as an embedder detecting by itself, without a cache
    want, want_fb = DlibResNetEmbedder().embed(imgs, boxes)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(fb, want_fb)


def test_an_image_not_analysed_is_detected_once_and_its_boxes_kept(tmp_path):
    imgs = [im[:, ::-1].copy() for im in _images(2)]  # mirrored: not the analysed pixels
    cache = Cache(tmp_path)
    emb = DlibResNetEmbedder()
    calls = _counting(emb)
    cached_embeddings(cache, emb, imgs, [LFW_FACE_BOX] * 2)
    assert calls[0] == 2
    # another box on the same pixels: a new embedding, but the detections come from the cache
    cached_embeddings(cache, emb, imgs, [(60.0, 70.0, 180.0, 190.0)] * 2)
    assert calls[0] == 2
