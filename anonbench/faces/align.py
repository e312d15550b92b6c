"""Five-point face alignment: least-squares similarity transform and warp to a fixed crop.

Point order everywhere: left eye, right eye (image left/right), nose tip, left and right mouth
corner; coordinates are (x, y) pixels with the origin at the centre of the top-left pixel
(OpenCV and dlib convention).
"""

from __future__ import annotations

import numpy as np

# The SphereFace / MobileFaceNet 112x96 template (wy1iu/sphereface, face_align_demo.m). Those
# numbers are MATLAB 1-based pixel coordinates; this is the same template 0-based.
SPHEREFACE_112x96 = (
    np.array(
        [
            [30.2946, 51.6963],
            [65.5318, 51.5014],
            [48.0252, 71.7366],
            [33.5493, 92.3655],
            [62.7299, 92.2041],
        ],
        dtype=np.float64,
    )
    - 1.0
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 matrix M of the similarity (scale, rotation, translation; no reflection) that maps
    src onto dst with the least sum of squared errors: dst ~ M @ [x, y, 1].

    Closed form (Umeyama 1991, restricted to 2-D): the same minimiser as MATLAB's cp2tform
    'nonreflective similarity', since x' = a x - b y + tx, y' = b x + a y + ty is linear in
    (a, b, tx, ty).
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two equal sets of >= 2 points, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = float((s**2).sum())
    if var < 1e-12:
        raise ValueError("source points are all the same point")
    # a = sum(s . d) / |s|^2, b = sum(s x d) / |s|^2 minimise |(a + ib) s - d|^2 over complex
    a = float((s * d).sum()) / var
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / var
    rot = np.array([[a, -b], [b, a]])
    t = mu_d - rot @ mu_s
    return np.hstack([rot, t[:, None]])


def warp_face(
    image: np.ndarray,
    points5: np.ndarray,
    ref_points: np.ndarray,
    size: tuple[int, int],
) -> np.ndarray:
    """Warps image (H x W x C uint8) so that points5 land on ref_points; returns the
    size = (height, width) crop, bilinear, zero outside the image (as MATLAB imtransform)."""
    import cv2

    m = similarity_transform(points5, ref_points)
    h, w = size
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        m,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def five_points_from_68(landmarks: np.ndarray) -> np.ndarray:
    """5 x 2 points from 68 iBUG landmarks: eye centres (mean of 36-41, 42-47), nose tip (30),
    mouth corners (48, 54) -- the points MTCNN gives, which the 5-point templates assume."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
