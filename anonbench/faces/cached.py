"""Detector and embedder calls cached by content (sha256 of the pixels + component + version),
so every protocol and every rerun reuses what was computed once."""

from __future__ import annotations

from typing import Any

import numpy as np

from anonbench.cache import Cache, array_digest
from anonbench.faces.mask import Box


def cached_embedding(
    cache: Cache, embedder: Any, image: np.ndarray, fallback_box: Box, digest: str | None = None
) -> tuple[np.ndarray, bool]:
    """(L2-normalised embedding, used the fixed box) for one H x W x 3 uint8 image."""
    comp, version = f"embed-{embedder.name}", f"{embedder.version}/box{fallback_box}"
    digest = digest or array_digest(image)
    hit = cache.get(comp, version, digest)
    if hit is None:
        emb, fb = embedder.embed([image], fallback_box)
        hit = {"embedding": emb[0], "fallback": np.array(fb[0])}
        cache.put(comp, version, digest, hit)
    return hit["embedding"], bool(hit["fallback"])


def cached_boxes(
    cache: Cache, detector: Any, image: np.ndarray, digest: str | None = None
) -> np.ndarray:
    """N x 4 float32 face boxes (l, t, r, b) the detector finds in one image."""
    comp = f"detect-{detector.name}"
    digest = digest or array_digest(image)
    hit = cache.get(comp, detector.version, digest)
    if hit is None:
        boxes = np.array([f.box for f in detector.detect(image)], np.float32).reshape(-1, 4)
        hit = {"boxes": boxes}
        cache.put(comp, detector.version, digest, hit)
    return hit["boxes"]
