"""Image reading: RGB uint8 arrays (H x W x 3); float [0, 1] tensors are made from these."""

from __future__ import annotations

import os

import numpy as np

from anonbench.errors import AnonbenchError


class ImageReadError(AnonbenchError):
    """An image file is missing or cannot be decoded."""


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise ImageReadError(f"image not found: {path}")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageReadError(f"cannot decode image: {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 -> float32 in [0, 1]."""
    return img.astype(np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float H x W x 3 in [0, 1] -> uint8, rounded."""
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
