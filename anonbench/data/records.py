"""The record every image dataset yields: where the image is, whose face, which split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class ImageRecord:
    key: str  # stable: the path relative to the dataset root
    path: Path
    identity: str
    split: str | None = None
    landmarks5: np.ndarray | None = field(default=None, compare=False, hash=False)
