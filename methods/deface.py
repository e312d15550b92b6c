"""deface 1.5.0 (ORB-HD/deface, MIT) as a method: its own pipeline, not a re-implementation.

For each face the benchmark anonymizes, deface's CenterFace (`anonbench.faces.centerface`, its
default threshold 0.2) runs on the whole image, and deface's `anonymize_frame` draws over the
CenterFace detection that best overlaps the face (IoU >= 0.3), with deface's defaults: the
box scaled by its mask scale 1.3, then `blur` (a box blur of half the box size inside the
box's inscribed ellipse) or `mosaic` (20-pixel cells over the whole scaled box). That region
is CenterFace's, not the CIAGAN mask: it reaches the forehead, hair and background, so the
method declares region "image".

Deviations from the deface command, forced by the benchmark's face-by-face production: a
CenterFace face no analysed face overlaps is left alone (deface would anonymize it), and a face
CenterFace misses at threshold 0.2 is left unchanged (as deface would): that leak shows in the
privacy metrics, not in `faces_missed` (the analysis found the face).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from anonbench.api import Anonymizer, FaceBatch, MethodMeta
from anonbench.faces.centerface import DEFACE_THRESHOLD, _deface_module, detect_raw
from anonbench.faces.mask import iou

MATCH_IOU = 0.3  # a CenterFace detection must overlap the analysed face this much
DEFACE_MASK_SCALE = 1.3  # deface's --mask-scale default
DEFACE_MOSAIC = 20  # deface's --mosaicsize default


def match_detection(dets: np.ndarray, box: np.ndarray, min_iou: float = MATCH_IOU) -> int | None:
    """Index of the detection (N x 5) best overlapping box, or None below min_iou."""
    if len(dets) == 0:
        return None
    ref = tuple(float(v) for v in box[:4])
    ious = [iou(tuple(float(v) for v in d[:4]), ref) for d in dets]
    best = int(np.argmax(ious))
    return best if ious[best] >= min_iou else None


class Deface(Anonymizer):
    """deface 1.5.0: CenterFace detection, then its blur (ellipse) or mosaic over the scaled
    detection box."""

    meta = MethodMeta(
        paper="deface 1.5.0 (ORB-HD/deface; CenterFace, Xu et al. 2019)",
        license="MIT",
        region="image",
        note="deface's own CenterFace region (scaled box), not the CIAGAN mask",
    )

    def __init__(
        self,
        replacewith: str = "blur",
        threshold: float = DEFACE_THRESHOLD,
        mask_scale: float = DEFACE_MASK_SCALE,
        ellipse: bool = True,
        mosaicsize: int = DEFACE_MOSAIC,
    ) -> None:
        if replacewith not in ("blur", "mosaic", "solid"):
            raise ValueError(f"replacewith must be blur, mosaic or solid, got {replacewith!r}")
        self.replacewith = replacewith
        self.threshold, self.mask_scale = float(threshold), float(mask_scale)
        self.ellipse, self.mosaicsize = bool(ellipse), int(mosaicsize)
        self._deface = _deface_module("deface.deface")  # fails now, not mid-production

    def config(self) -> dict[str, Any]:
        from anonbench.faces.centerface import weights_sha256

        return {
            "deface": self._deface.__version__,
            "centerface_sha256": weights_sha256(),
            "replacewith": self.replacewith,
            "threshold": self.threshold,
            "mask_scale": self.mask_scale,
            "ellipse": self.ellipse,
            "mosaicsize": self.mosaicsize,
            "match_iou": MATCH_IOU,
        }

    def deface_image(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """deface's pipeline on one H x W x 3 uint8 RGB image, for the CenterFace face over
        box; a copy (unchanged when CenterFace finds no face there)."""
        frame = image.copy()
        dets = detect_raw(frame, self.threshold)
        j = match_detection(dets, box)
        if j is None:
            return frame
        self._deface.anonymize_frame(
            dets[j : j + 1],
            frame,
            mask_scale=self.mask_scale,
            replacewith=self.replacewith,
            ellipse=self.ellipse,
            draw_scores=False,
            replaceimg=None,
            mosaicsize=self.mosaicsize,
        )
        return frame

    def _generate(
        self, batch: FaceBatch, *, targets: Sequence[int] | None, generator: Any
    ) -> torch.Tensor:
        imgs = batch.images.permute(0, 2, 3, 1).cpu().numpy()
        boxes = batch.boxes.cpu().numpy().astype(np.float64)
        out = batch.images.clone()
        for i, im in enumerate(imgs):
            u8 = np.clip(np.rint(im * 255.0), 0, 255).astype(np.uint8)
            res = self.deface_image(u8, boxes[i])
            changed = torch.from_numpy((res != u8).any(axis=2))
            new = torch.from_numpy(res).permute(2, 0, 1).to(out.dtype) / 255.0
            # pixels deface did not touch keep their exact input values
            out[i] = torch.where(changed.unsqueeze(0), new.to(out.device), out[i])
        return out
