"""Detector and embedder calls cached by content (sha256 of the pixels + component + version),
so every protocol and every rerun reuses what was computed once.

The batched functions look every image up first and send only the misses to the evaluator, in
one batched call (`detect_batch`, `embed`); the evaluator batches its network forwards itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anonbench.cache import Cache, array_digest
from anonbench.faces.mask import Box, reference_boxes

# what a cached detection holds (anonbench.cache.matches): anything else is recomputed
BOXES = {"boxes": (None, 4)}


def _digests(images: Sequence[np.ndarray], digests: Sequence[str] | None) -> list[str]:
    if digests is None:
        return [array_digest(img) for img in images]
    if len(digests) != len(images):
        raise ValueError(f"{len(digests)} digests for {len(images)} images")
    return [d or array_digest(img) for d, img in zip(digests, images, strict=True)]


def box_key(box: Box) -> str:
    """The reference box in a cache key: rounded to 0.1 pixel (so float noise in a box
    derived from a detection does not miss the cache)."""
    # + 0.0 turns -0.0 into 0.0, so both print the same
    return ",".join(f"{round(float(v), 1) + 0.0:.1f}" for v in box)


def cached_detections(
    cache: Cache,
    detector: Any,
    images: Sequence[np.ndarray],
    digests: Sequence[str] | None = None,
) -> list[np.ndarray]:
    """Per image, the N x 4 float32 face boxes (l, t, r, b) the detector finds, most confident
    first. digests: the images' `array_digest`s when the caller has them."""
    comp = f"detect-{detector.name}"
    keys = _digests(images, digests)
    out: list[np.ndarray | None] = [None] * len(images)
    misses: dict[str, list[int]] = {}  # digest -> positions (an image given twice runs once)
    for i, key in enumerate(keys):
        hit = cache.get(comp, detector.version, key, BOXES) if key not in misses else None
        if hit is not None:
            out[i] = hit["boxes"]
        else:
            misses.setdefault(key, []).append(i)
    if misses:
        todo = [images[idx[0]] for idx in misses.values()]
        if hasattr(detector, "detect_batch"):
            found = detector.detect_batch(todo)
        else:  # a plug-in detector without the batched call
            found = [detector.detect(img) for img in todo]
        for (key, idx), faces in zip(misses.items(), found, strict=True):
            boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
            cache.put(comp, detector.version, key, {"boxes": boxes})
            for i in idx:
                out[i] = boxes
    return out  # type: ignore[return-value]


def cached_embeddings(
    cache: Cache,
    embedder: Any,
    images: Sequence[np.ndarray],
    boxes: Sequence[Box],
    digests: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(N x dim float32 L2-normalised embeddings, N bool "embedded the reference box") for
    H x W x 3 uint8 images, each with its reference box (see anonbench.api.Embedder). Keyed by
    the image digest, the embedder's version and the reference box rounded to 0.1 pixel."""
    comp = f"embed-{embedder.name}"
    refs = reference_boxes(boxes, len(images))
    digests = _digests(images, digests)
    keys = [f"{d}/box{box_key(b)}" for d, b in zip(digests, refs, strict=True)]
    emb = np.zeros((len(images), int(embedder.dim)), np.float32)
    fell_back = np.zeros(len(images), bool)
    misses: dict[str, list[int]] = {}
    schema = {"embedding": (int(embedder.dim),), "fallback": ()}
    for i, key in enumerate(keys):
        hit = cache.get(comp, embedder.version, key, schema) if key not in misses else None
        if hit is not None:
            emb[i], fell_back[i] = hit["embedding"], bool(hit["fallback"])
        else:
            misses.setdefault(key, []).append(i)
    if misses:
        first = [idx[0] for idx in misses.values()]
        kw = {}
        if getattr(embedder, "takes_detections", False):
            # its detector's boxes through the detection cache, where the originals' analysis
            # put them (FaceAnalyzer): an analysed original is not detected a second time
            dets = cached_detections(
                cache, embedder.detector, [images[i] for i in first], [digests[i] for i in first]
            )
            kw["found"] = [[tuple(float(v) for v in b) for b in d] for d in dets]
        e, fb = embedder.embed([images[i] for i in first], [refs[i] for i in first], **kw)
        for (key, idx), v, f in zip(misses.items(), e, fb, strict=True):
            cache.put(
                comp,
                embedder.version,
                key,
                {"embedding": np.asarray(v, np.float32), "fallback": np.array(bool(f))},
            )
            emb[idx], fell_back[idx] = v, bool(f)
    return emb, fell_back


def cached_embedding(
    cache: Cache, embedder: Any, image: np.ndarray, fallback_box: Box, digest: str | None = None
) -> tuple[np.ndarray, bool]:
    """(L2-normalised embedding, embedded the reference box) for one H x W x 3 uint8 image."""
    e, fb = cached_embeddings(
        cache, embedder, [image], [fallback_box], None if digest is None else [digest]
    )
    return e[0], bool(fb[0])


def cached_boxes(
    cache: Cache, detector: Any, image: np.ndarray, digest: str | None = None
) -> np.ndarray:
    """N x 4 float32 face boxes (l, t, r, b) the detector finds in one image."""
    return cached_detections(cache, detector, [image], None if digest is None else [digest])[0]
