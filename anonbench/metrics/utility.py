"""Face-geometry utility metrics: does the anonymized face keep the original's landmarks, head
pose and expression? Lower is better for all three.

Everything here works on landmark arrays (K x 2 pixel coordinates, or N x K x 2) in one of the
layouts below (iBUG 68 from dlib, MediaPipe's 468-point face mesh); nothing runs a network.
- `nme`: normalised mean error, the mean point-to-point distance of the output's landmarks
  from the original's, divided by the original's inter-ocular distance (outer eye corners,
  the 300-W convention);
- `head_pose` / `pose_difference`: head rotation from a PnP fit (cv2.solvePnP) of six
  landmarks to a generic 3D face model, and the yaw, pitch, roll and geodesic angle between
  two fits, in degrees;
- `mouth_ratio` / `eye_ratio`: mouth opening (inner-lip gap / mouth width) and eye opening
  (Soukupova and Cech's eye aspect ratio, mean of both eyes); `expression_change` is the mean
  of their absolute changes;
- `with_ceiling`: per-image errors with failures (no face or no landmarks on the output)
  counted at a stated ceiling, so a method that destroys the face cannot drop out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """Indices of the points the metrics use in one landmark layout. "Left" is image-left
    (the subject's right)."""

    name: str
    points: int
    eye_outer: tuple[int, int]  # outer eye corners: the inter-ocular distance
    # nose tip, chin, left eye outer corner, right eye outer corner, left and right mouth
    # corner: the points fitted to GENERIC_FACE_3D, in its order
    pnp: tuple[int, int, int, int, int, int]
    mouth: tuple[int, int, int, int]  # upper inner lip, lower inner lip, left, right corner
    # per eye p0..p5: corner, two upper lid points, other corner, two lower lid points, with
    # p1 above p5 and p2 above p4 (the eye aspect ratio's order)
    eyes: tuple[tuple[int, ...], tuple[int, ...]]


IBUG68 = Layout(
    name="ibug68",
    points=68,
    eye_outer=(36, 45),
    pnp=(30, 8, 36, 45, 48, 54),
    mouth=(62, 66, 48, 54),
    eyes=((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47)),
)
# MediaPipe face mesh (canonical_face_model_uv_visualization): 1 nose tip, 152 chin, 33/263
# outer eye corners, 61/291 mouth corners, 13/14 inner lips; the usual EAR points per eye
MEDIAPIPE468 = Layout(
    name="mediapipe468",
    points=468,
    eye_outer=(33, 263),
    pnp=(1, 152, 33, 263, 61, 291),
    mouth=(13, 14, 61, 291),
    eyes=((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380)),
)
LAYOUTS = {IBUG68.points: IBUG68, MEDIAPIPE468.points: MEDIAPIPE468}

# A generic 3D face (arbitrary units, roughly millimetres) in camera axes: x to the image
# right, y down, z away from the camera; nose tip at the origin. The usual six-point model
# (nose, chin, eye corners, mouth corners) used with solvePnP for head pose, with y and z
# flipped so that a frontal, upright face has the identity rotation.
GENERIC_FACE_3D = np.array(
    [
        (0.0, 0.0, 0.0),  # nose tip
        (0.0, 330.0, 65.0),  # chin
        (-225.0, -170.0, 135.0),  # left (image-left) eye outer corner
        (225.0, -170.0, 135.0),  # right eye outer corner
        (-150.0, 150.0, 125.0),  # left mouth corner
        (150.0, 150.0, 125.0),  # right mouth corner
    ],
    np.float64,
)


def layout_for(landmarks: np.ndarray) -> Layout:
    """The layout of K x 2 (or N x K x 2) landmarks, from K."""
    k = int(np.asarray(landmarks).shape[-2])
    if k not in LAYOUTS:
        raise ValueError(f"no landmark layout with {k} points (known: {sorted(LAYOUTS)})")
    return LAYOUTS[k]


def interocular(landmarks: np.ndarray, layout: Layout | None = None) -> np.ndarray:
    """Distance between the outer eye corners (per face for N x K x 2)."""
    lm = np.asarray(landmarks, np.float64)
    lay = layout or layout_for(lm)
    a, b = lay.eye_outer
    return np.linalg.norm(lm[..., a, :] - lm[..., b, :], axis=-1)


def nme(pred: np.ndarray, ref: np.ndarray, layout: Layout | None = None) -> np.ndarray:
    """Normalised mean error of `pred` against `ref` (K x 2 or N x K x 2, same layout): the
    mean Euclidean point distance divided by ref's inter-ocular distance."""
    p, r = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if p.shape != r.shape:
        raise ValueError(f"landmark shapes differ: {p.shape} vs {r.shape}")
    dist = np.linalg.norm(p - r, axis=-1).mean(axis=-1)
    return dist / np.maximum(interocular(r, layout), 1e-9)


def camera_matrix(height: int, width: int) -> np.ndarray:
    """A pinhole camera for an image without calibration: focal length = the larger image
    side, principal point at the centre (the usual head-pose approximation)."""
    f = float(max(height, width))
    return np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1]], np.float64)


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) @ Ry(yaw) @ Rx(pitch), angles in degrees (the convention of
    `euler_from_rotation`): yaw turns the head left/right, pitch nods, roll tilts."""
    y, p, r = np.radians([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def euler_from_rotation(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of R = Rz(roll) @ Ry(yaw) @ Rx(pitch)."""
    r = np.asarray(rot, np.float64)
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def head_pose(
    landmarks: np.ndarray, height: int, width: int, layout: Layout | None = None
) -> np.ndarray | None:
    """3 x 3 head rotation (camera axes) of K x 2 landmarks: solvePnP of the layout's six
    points to GENERIC_FACE_3D with `camera_matrix`; None when the fit fails."""
    import cv2

    lm = np.asarray(landmarks, np.float64)
    lay = layout or layout_for(lm)
    pts = np.ascontiguousarray(lm[list(lay.pnp)])
    if not np.isfinite(pts).all():
        return None
    # the iterative solver (Levenberg-Marquardt) from the DLT start needs >= 6 points: we have
    # exactly six, all non-coplanar in the model
    ok, rvec, _ = cv2.solvePnP(
        GENERIC_FACE_3D, pts, camera_matrix(height, width), None, flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok:
        return None
    return cv2.Rodrigues(rvec)[0]


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class PoseDifference:
    yaw: float  # absolute differences, degrees
    pitch: float
    roll: float
    angle: float  # geodesic angle between the two rotations, degrees


def pose_difference(rot_a: np.ndarray, rot_b: np.ndarray) -> PoseDifference:
    """Absolute yaw, pitch and roll differences and the rotation angle of rot_a^T rot_b."""
    ea, eb = euler_from_rotation(rot_a), euler_from_rotation(rot_b)
    d = [abs(_wrap(b - a)) for a, b in zip(ea, eb, strict=True)]
    rel = np.asarray(rot_a, np.float64).T @ np.asarray(rot_b, np.float64)
    # atan2 of the sine (skew part) and cosine (trace) of the angle: exact near 0, where
    # arccos of the trace alone loses half the digits
    cos = (np.trace(rel) - 1.0) / 2.0
    skew = np.array([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]])
    sin = np.linalg.norm(skew) / 2.0
    return PoseDifference(d[0], d[1], d[2], float(np.degrees(np.arctan2(sin, cos))))


def mouth_ratio(landmarks: np.ndarray, layout: Layout | None = None) -> np.ndarray:
    """Inner-lip gap over mouth width (0 = closed)."""
    lm = np.asarray(landmarks, np.float64)
    up, lo, left, right = (layout or layout_for(lm)).mouth
    gap = np.linalg.norm(lm[..., up, :] - lm[..., lo, :], axis=-1)
    width = np.linalg.norm(lm[..., left, :] - lm[..., right, :], axis=-1)
    return gap / np.maximum(width, 1e-9)


def eye_ratio(landmarks: np.ndarray, layout: Layout | None = None) -> np.ndarray:
    """Eye aspect ratio (|p1 - p5| + |p2 - p4|) / (2 |p0 - p3|), mean of both eyes."""
    lm = np.asarray(landmarks, np.float64)
    ears = []
    for eye in (layout or layout_for(lm)).eyes:
        p = [lm[..., i, :] for i in eye]
        vert = np.linalg.norm(p[1] - p[5], axis=-1) + np.linalg.norm(p[2] - p[4], axis=-1)
        ears.append(vert / np.maximum(2 * np.linalg.norm(p[0] - p[3], axis=-1), 1e-9))
    return (ears[0] + ears[1]) / 2


@dataclass(frozen=True)
class ExpressionChange:
    mouth: float  # |mouth_ratio(output) - mouth_ratio(original)|
    eye: float  # |eye_ratio(output) - eye_ratio(original)|

    @property
    def value(self) -> float:
        """The expression_change metric of one face: the mean of the two changes."""
        return (self.mouth + self.eye) / 2


def expression_change(pred: np.ndarray, ref: np.ndarray) -> ExpressionChange:
    """Mouth- and eye-opening changes of `pred` against `ref` (K x 2, same layout)."""
    lay = layout_for(ref)
    return ExpressionChange(
        float(abs(mouth_ratio(pred, lay) - mouth_ratio(ref, lay))),
        float(abs(eye_ratio(pred, lay) - eye_ratio(ref, lay))),
    )


def with_ceiling(errors: np.ndarray, failed: np.ndarray, ceiling: float) -> np.ndarray:
    """Per-image errors with failed images (no face / no landmarks) set to `ceiling`, and
    every error capped there (so one wild fit cannot outweigh a failure)."""
    e = np.asarray(errors, np.float64).copy()
    f = np.asarray(failed, bool)
    if e.shape != f.shape:
        raise ValueError(f"{e.shape} errors for {f.shape} failure flags")
    e[f | ~np.isfinite(e)] = ceiling
    return np.minimum(e, ceiling)
