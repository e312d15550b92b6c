"""MTCNN (Zhang et al., 2016) through facenet-pytorch: box, score and 5 landmarks per face.

facenet-pytorch ships the P-, R- and O-Net weights inside its wheel, so nothing is downloaded.
It is imported when a detector is built, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anonbench.api import FaceDetection
from anonbench.errors import AnonbenchError

PIP_SPEC = "facenet-pytorch==2.5.3"  # 2.6.0 pins torch<2.3 and would downgrade torch


def _import_mtcnn() -> Any:
    try:
        from facenet_pytorch import MTCNN
    except ImportError as e:
        raise AnonbenchError(
            f"the mtcnn detector needs facenet-pytorch ({e}); `pip install {PIP_SPEC}`"
        ) from None
    return MTCNN


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facenet-pytorch")
    except PackageNotFoundError:  # importable but not installed as a distribution
        return "unknown"


class MTCNNDetector:
    """MTCNN cascade (P-Net, R-Net, O-Net) from facenet-pytorch; 5 landmarks per face.

    conf_threshold is the O-Net stage's threshold, whose probability is the reported score
    (0.7 is MTCNN's published setting); stage_thresholds are the P-Net and R-Net ones.
    """

    name = "mtcnn"

    def __init__(
        self,
        conf_threshold: float = 0.7,
        min_face_size: int = 20,
        device: str = "cpu",
        *,
        batch_size: int = 32,
        stage_thresholds: tuple[float, float] = (0.6, 0.7),
        factor: float = 0.709,
    ) -> None:
        mtcnn_cls = _import_mtcnn()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = device
        self.conf_threshold = float(conf_threshold)
        thresholds = [float(stage_thresholds[0]), float(stage_thresholds[1]), self.conf_threshold]
        # keep_all: every face, not only one; select_largest=False: ordered by probability
        self._mtcnn = mtcnn_cls(
            min_face_size=min_face_size,
            thresholds=thresholds,
            factor=factor,
            keep_all=True,
            select_largest=False,
            device=device,
        )
        self.version = (
            f"mtcnn/facenet-pytorch-{_package_version()}/min{min_face_size}"
            f"/t{thresholds[0]:g},{thresholds[1]:g},{thresholds[2]:g}/f{factor:g}/1"
        )

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """image: H x W x 3 uint8 RGB. Faces most confident first; landmarks 5 x 2 float32
        (eye left in the image, other eye, nose, mouth corners), pixel coordinates."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """`detect` for each image. facenet-pytorch runs a stack of equal-size images through
        each stage at once (its NMS is per image), so images are grouped by size and sent
        batch_size at a time."""
        import torch

        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"expected an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}"
                )
        out: list[list[FaceDetection]] = [[] for _ in images]
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape[:2], []).append(i)
        for idx in by_size.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                stack = np.stack([images[i] for i in chunk])  # B x H x W x 3
                with torch.no_grad():
                    boxes, probs, points = self._mtcnn.detect(stack, landmarks=True)
                for j, i in enumerate(chunk):
                    out[i] = _faces(boxes[j], probs[j], points[j])
        return out


def _faces(boxes: Any, probs: Any, points: Any) -> list[FaceDetection]:
    """One image's facenet-pytorch output (None when no face; numpy object arrays otherwise)
    -> faces, most confident first."""
    if boxes is None:
        return []
    # it returns numpy object arrays: make them plain floats
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    points = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)
    order = np.argsort(-probs, kind="stable")
    return [
        FaceDetection(
            (float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])),
            float(probs[i]),
            landmarks=points[i],
        )
        for i in order
    ]
