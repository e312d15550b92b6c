"""Face analysis of an image (boxes + 68 landmarks for every face), cached by content."""

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


def create_detector(name: str, threshold: float | None = None) -> Any:
    """A registered detector, with its detection threshold set when `threshold` is given; a
    detector that takes none is one clear error."""
    import inspect

    from anonbench.errors import AnonbenchError
    from anonbench.registry import DETECTORS

    if threshold is None:
        return DETECTORS.create(name)
    try:
        params = inspect.signature(DETECTORS.entry(name).factory).parameters
    except (TypeError, ValueError):
        params = {}
    key = next((k for k in THRESHOLD_PARAMS if k in params), None)
    if key is None:
        raise AnonbenchError(f"detector {name!r} takes no detection threshold")
    return DETECTORS.create(name, **{key: threshold})


class FaceAnalyzer:
    """Detector + landmarker; results cached under sha256(pixels) + component + version."""

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

    @classmethod
    def version_of(cls, detector: str = "dlib-hog", landmarker: str = "dlib-68") -> str:
        """The version string of an analyzer (it keys cached analyses and output stores)."""
        return cls(detector, landmarker).version

    def __call__(self, image: np.ndarray) -> FaceAnalysis:
        digest = array_digest(image)
        hit = self.cache.get(self.component, self.version, digest, ANALYSIS)
        if hit is not None:
            return FaceAnalysis(hit["boxes"], hit["scores"], hit["landmarks"])
        faces = self.detector.detect(image)
        boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        scores = np.array([f.score for f in faces], np.float32)
        lms = (
            np.stack([self.landmarker.landmarks(image, f.box) for f in faces]).astype(np.float32)
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
