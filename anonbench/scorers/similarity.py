"""Image similarity: SSIM and PSNR of the face region (the frozen reference box) of each
output against its original (scikit-image)."""

from __future__ import annotations

from typing import Any

import numpy as np

from anonbench.api import Box, RunContext
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Pass, Scorer

PSNR_CAP = 100.0  # dB: an unchanged face region (infinite PSNR) counts as this
EVALUATOR = "face-box"


def face_crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of `box` (l, t, r, b), rounded outwards and clipped to the image."""
    h, w = image.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    return image[y0:y1, x0:x1]


def similarity(original: np.ndarray, output: np.ndarray) -> tuple[float, float] | None:
    """(SSIM, PSNR in dB capped at PSNR_CAP) of two same-size uint8 RGB crops; None when the
    crops differ in size or are under 3 pixels a side (no SSIM window fits)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    if original.shape != output.shape or min(original.shape[:2]) < 3:
        return None
    side = min(original.shape[:2])
    win = min(7, side if side % 2 else side - 1)  # odd, at most the crop
    ssim = structural_similarity(original, output, channel_axis=2, data_range=255, win_size=win)
    if np.array_equal(original, output):
        return float(ssim), PSNR_CAP
    psnr = peak_signal_noise_ratio(original, output, data_range=255)
    return float(ssim), float(min(psnr, PSNR_CAP))


class SimilarityScorer(Scorer):
    """face_ssim and face_psnr: the face region of each output against its original."""

    name = "similarity"
    specs = catalog.specs("face_ssim", "face_psnr")

    def __init__(self) -> None:
        self._items: list[dict[str, Any]] = []

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        self._items = []
        left_out = 0
        for k in out.keys:
            box = out.box(k)
            v = similarity(face_crop(self.real.load(k), box), face_crop(out.load(k), box))
            if v is None:
                left_out += 1
                continue
            self._items.append(
                {"key": k, "evaluator": EVALUATOR, "face_ssim": v[0], "face_psnr": v[1]}
            )
        note = (
            f"{left_out} images left out (face box under 3 px or sizes differ)" if left_out else ""
        )
        note = "; ".join(x for x in (note, out.note) if x)
        return [
            MetricResult.from_values(
                m, EVALUATOR, [it[m] for it in self._items], seed=ctx.seed, note=note
            )
            for m in ("face_ssim", "face_psnr")
        ]

    def per_item(self) -> list[dict[str, Any]]:
        return list(self._items)
