"""The CIAGAN face mask and box helpers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]


def ciagan_mask_polygon(landmarks: np.ndarray) -> np.ndarray:
    """Polygon of the CIAGAN face mask for 68 landmarks: (x0, y19) -> jaw points 0..16 ->
    (x16, y24). It covers the face below the eyebrows; the forehead stays original, as in the
    official CIAGAN preprocessing."""
    lm = np.asarray(landmarks, dtype=np.float64)
    top_left = (lm[0, 0], lm[19, 1])
    top_right = (lm[16, 0], lm[24, 1])
    return np.vstack([top_left, lm[0:17], top_right])


def ciagan_mask(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """H x W float32 mask, 1 inside the CIAGAN face polygon."""
    import cv2

    m = np.zeros((height, width), np.uint8)
    poly = np.round(ciagan_mask_polygon(landmarks)).astype(np.int32)
    cv2.fillPoly(m, [poly], 1)
    return m.astype(np.float32)


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def choose_box(boxes: list[Box], fallback_box: Box, min_iou: float = 0.3) -> tuple[Box, bool]:
    """The box best overlapping the reference box, or that box itself when no box
    overlaps it by min_iou (returns (box, used_fallback)). An attacker that does not give up."""
    best = max(boxes, key=lambda b: iou(b, fallback_box), default=None)
    if best is not None and iou(best, fallback_box) >= min_iou:
        return best, False
    return fallback_box, True


def reference_boxes(boxes: Sequence[Box] | Box | np.ndarray, n: int) -> list[Box]:
    """One reference box per image from an embedder's `boxes` argument: a sequence (or N x 4
    array) of n boxes, or a single (l, t, r, b) box meaning the same box for all n images."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.shape == (4,):
        arr = np.broadcast_to(arr, (n, 4))
    elif arr.size == 0 and n == 0:
        arr = arr.reshape(0, 4)
    if arr.shape == (n, 4):
        return [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in arr]
    raise ValueError(
        f"boxes: expected one (l, t, r, b) box or {n} of them (one per image), "
        f"got an array of shape {arr.shape}"
    )
