"""Face analysis of an image (boxes + 68 landmarks for every face), cached by content.

The analysis detector decides which faces every method anonymizes and the reference box of
every original. dlib HOG (`dlib-hog`) is the default; any registered detector can take its
place (`--analysis-detector`). dlib's 68-point predictor was trained on HOG boxes, which are
squarer and lower than those of RetinaFace or MTCNN, so another detector's face is first given
the box HOG would give it: from its 5 points where it has them (PREDICTOR_BOX_FROM_POINTS),
else from its box (PREDICTOR_BOX); measured in benchmarks/results/analysis_detector.md. The
analysis keeps the detector's own box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from anonbench.cache import Cache, array_digest
from anonbench.faces.mask import ciagan_mask


@dataclass
class FaceAnalysis:
    boxes: np.ndarray  # N x 4 float32 (l, t, r, b)
    scores: np.ndarray  # N float32
    landmarks: np.ndarray  # N x 68 x 2 float32

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def masks(self, height: int, width: int) -> np.ndarray:
        """N x H x W CIAGAN masks."""
        return (
            np.stack([ciagan_mask(lm, height, width) for lm in self.landmarks])
            if len(self)
            else (np.zeros((0, height, width), np.float32))
        )


# what a cached analysis holds (anonbench.cache.matches): anything else is recomputed
ANALYSIS = {"boxes": ("n", 4), "scores": ("n",), "landmarks": ("n", None, 2)}


# a detector's score threshold, by the name its constructor gives it
THRESHOLD_PARAMS = ("threshold", "conf_threshold", "min_confidence")

# the analysis detector of the benchmark protocols (the paper's); its analyses, versions and
# store keys are those of every earlier release
DEFAULT_DETECTOR = "dlib-hog"

# The box dlib's 68-point predictor expects (a dlib HOG box) from another detector's box
# (l, t, r, b): l + a_l w, t + a_t h, r + a_r w, b + a_b h (w, h: the detector box's size).
# Medians over the first 208 faces of 400 LFW images (seed 1) matched to a HOG box by IoU
# >= 0.3. On the other ~209 faces, the mean NME (mean point distance / outer-eye-corner
# distance) of the predictor's points against those it gives on the HOG box falls from 0.049
# (raw box) to 0.027 for RetinaFace, 0.046 -> 0.030 MTCNN, 0.044 -> 0.032 CenterFace,
# 0.056 -> 0.046 MediaPipe, 0.027 -> 0.022 dlib MMOD. A detector not listed here hands the
# predictor its box as it is (benchmarks/results/analysis_detector.md).
PREDICTOR_BOX: dict[str, tuple[float, float, float, float]] = {
    "retinaface": (-0.1067, 0.1412, 0.0283, -0.0494),
    "mtcnn": (-0.1074, 0.1227, 0.0376, -0.0299),
    "centerface": (-0.1037, 0.1229, 0.0103, -0.0390),
    "mediapipe": (-0.0391, -0.0665, -0.0369, -0.0685),
    "dlib-mmod": (0.0101, 0.0408, 0.0658, 0.0714),
}

# Better, where the detector gives 5 points (eye centres, nose tip, mouth corners): a square
# box centred at e + (dx d, dy d), side s d (e: the eyes' midpoint, d: its distance to the
# mouth corners' midpoint). Fitted (medians) on the same faces; it does not depend on how
# much of the head the image shows, while the box does: on tight 112-px LFW crops (HOG box =
# the crop) RetinaFace's box is cut at the crop's top, the box mapping above moves it too
# far down (mean NME 0.043 against the original's points, raw box 0.032), and the points
# place it where HOG would (0.027; HOG on the crop itself: 0.028). On LFW: 0.014 (RetinaFace),
# 0.016 (MTCNN). (benchmarks/results/analysis_detector.md)
PREDICTOR_BOX_FROM_POINTS: dict[str, tuple[float, float, float]] = {
    "retinaface": (-0.0863, 0.4565, 2.3438),
    "mtcnn": (-0.0992, 0.4345, 2.3075),
}


def predictor_box(
    box: tuple[float, float, float, float], offsets: tuple[float, float, float, float] | None
) -> tuple[float, float, float, float]:
    """`box` moved by PREDICTOR_BOX offsets (fractions of its width and height); as it is
    when `offsets` is None."""
    if offsets is None:
        return box
    left, top, right, bottom = (float(v) for v in box)
    w, h = right - left, bottom - top
    return (
        left + offsets[0] * w,
        top + offsets[1] * h,
        right + offsets[2] * w,
        bottom + offsets[3] * h,
    )


def points_box(
    points: np.ndarray, fit: tuple[float, float, float]
) -> tuple[float, float, float, float] | None:
    """The predictor's box from 5 points (PREDICTOR_BOX_FROM_POINTS); None when the points
    are not 5 finite ones or the eyes and mouth coincide."""
    p = np.asarray(points, np.float64)
    if p.shape != (5, 2) or not np.isfinite(p).all():
        return None
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    d = float(np.linalg.norm(mouth - eyes))
    if d < 1e-3:
        return None
    cx, cy, half = eyes[0] + fit[0] * d, eyes[1] + fit[1] * d, fit[2] * d / 2
    return (float(cx - half), float(cy - half), float(cx + half), float(cy + half))


def _offsets_tag(
    offsets: tuple[float, float, float, float] | None,
    points: tuple[float, float, float] | None = None,
) -> str:
    """The predictor-box mapping in a version string (a changed mapping is a new version)."""
    tag = "pbox-asis" if offsets is None else "pbox" + "".join(f"{v:+.4f}" for v in offsets)
    return tag if points is None else tag + "/pts" + "".join(f"{v:+.4f}" for v in points)


def create_detector(name: str, threshold: float | None = None) -> Any:
    """A registered detector, with its detection threshold set when `threshold` is given; a
    detector that takes none is one clear error."""
    from anonbench import plugins
    from anonbench.errors import AnonbenchError
    from anonbench.registry import DETECTORS

    if threshold is None:
        return DETECTORS.create(name)
    key = plugins.first_accepted(DETECTORS, name, THRESHOLD_PARAMS)
    if key is None:
        raise AnonbenchError(f"detector {name!r} takes no detection threshold")
    return DETECTORS.create(name, **{key: threshold})


class FaceAnalyzer:
    """Detector + landmarker; results cached under sha256(pixels) + component + version."""

    # whether the landmarker is given a box mapped from the detector's (set per instance; an
    # analyzer assembled by hand gets its detector's boxes as they are)
    mapped: bool = False
    offsets: tuple[float, float, float, float] | None = None
    points_fit: tuple[float, float, float] | None = None

    def __init__(
        self,
        detector: str = "dlib-hog",
        landmarker: str = "dlib-68",
        cache: Cache | None = None,
        *,
        threshold: float | None = None,
    ) -> None:
        from anonbench.registry import LANDMARKERS

        self.detector = create_detector(detector, threshold)
        self.landmarker = LANDMARKERS.create(landmarker)
        self.cache = cache or Cache(enabled=False)
        self.component = f"analysis-{self.detector.name}-{self.landmarker.name}"
        self.version = f"{self.detector.version}+{self.landmarker.version}"
        # the predictor's own detector (dlib-hog, or what a landmarker names) needs no
        # mapping: its analyses and version stay those of every earlier release
        own = str(getattr(self.landmarker, "detector", DEFAULT_DETECTOR))
        self.mapped = self.detector.name != own
        # PREDICTOR_BOX was measured for dlib-68; another landmarker gets the box as it is
        dlib68 = self.landmarker.name == "dlib-68"
        mapped = self.mapped and dlib68
        self.offsets = PREDICTOR_BOX.get(self.detector.name) if mapped else None
        self.points_fit = PREDICTOR_BOX_FROM_POINTS.get(self.detector.name) if mapped else None
        if self.mapped:
            self.version += f"+{_offsets_tag(self.offsets, self.points_fit)}"

    @classmethod
    def version_of(cls, detector: str = "dlib-hog", landmarker: str = "dlib-68") -> str:
        """The version string of an analyzer (it keys cached analyses and output stores)."""
        return cls(detector, landmarker).version

    def predictor_box(
        self, box: tuple[float, float, float, float], points: np.ndarray | None = None
    ) -> tuple[float, float, float, float]:
        """The box the landmarker is given for a face this analyzer's detector found (its
        box, and its 5 points where it gives them)."""
        if not self.mapped:
            return box
        if self.points_fit is not None and points is not None:
            from_points = points_box(points, self.points_fit)
            if from_points is not None:
                return from_points
        return predictor_box(box, self.offsets)

    def __call__(self, image: np.ndarray) -> FaceAnalysis:
        digest = array_digest(image)
        hit = self.cache.get(self.component, self.version, digest, ANALYSIS)
        if hit is not None:
            return FaceAnalysis(hit["boxes"], hit["scores"], hit["landmarks"])
        faces = self.detector.detect(image)
        boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        scores = np.array([f.score for f in faces], np.float32)
        lms = (
            np.stack(
                [
                    self.landmarker.landmarks(image, self.predictor_box(f.box, f.landmarks))
                    for f in faces
                ]
            ).astype(np.float32)
            if faces
            else np.zeros((0, 68, 2), np.float32)
        )
        res = FaceAnalysis(boxes, scores, lms)
        self.cache.put(
            self.component,
            self.version,
            digest,
            {"boxes": boxes, "scores": scores, "landmarks": lms},
        )
        # the boxes under the detector's own entry too (anonbench.faces.cached): a recognizer
        # with this detector reads them rather than detecting the original again
        self.cache.put(
            f"detect-{self.detector.name}", self.detector.version, digest, {"boxes": boxes}
        )
        return res
