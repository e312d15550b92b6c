"""Applying an anonymizer to whole images: every detected face, one after the other."""

from __future__ import annotations

from typing import Any

import numpy as np

from anonbench.api import Anonymizer, FaceBatch
from anonbench.faces.analysis import FaceAnalysis


def anonymize_image(
    method: Anonymizer,
    image: np.ndarray,
    faces: FaceAnalysis,
    key: str,
    identity: str | None = None,
    target: int | None = None,
) -> np.ndarray:
    """Anonymizes every face of an H x W x 3 uint8 image; returns uint8. With no face the image
    comes back unchanged (the caller counts that as a miss). Faces are processed in turn so
    overlapping masks compose. `target`: the target identity index for identity-conditioned
    methods (every face of the image gets it)."""
    import torch

    if len(faces) == 0:
        return image
    h, w = image.shape[:2]
    cur = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0).unsqueeze(0)
    masks = faces.masks(h, w)
    for k in range(len(faces)):
        batch = FaceBatch(
            images=cur,
            landmarks=torch.from_numpy(faces.landmarks[k : k + 1]),
            masks=torch.from_numpy(masks[k : k + 1]).unsqueeze(1),
            boxes=torch.from_numpy(faces.boxes[k : k + 1]),
            keys=[f"{key}#{k}"],
            identities=[identity] if identity is not None else None,
        )
        cur = method.anonymize(batch, targets=None if target is None else [target])
    out = cur[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def load_anonymized(
    method: Anonymizer | None, analyzer: Any, path: str, key: str
) -> tuple[np.ndarray, int]:
    """Reads an image and, with a method, anonymizes every face the analyzer finds.
    Returns (RGB uint8 image, number of faces found; -1 without a method). Raises
    ImageReadError for an unreadable file."""
    from anonbench.data.images import read_rgb

    img = read_rgb(path)
    if method is None:
        return img, -1
    analysis = analyzer(img)
    return anonymize_image(method, img, analysis, key), len(analysis)
