"""Classic anonymizers: identity, Gaussian blur, pixelation, black mask.

All of them act only inside the face mask; Anonymizer.anonymize composites the result so every
pixel outside the mask is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from anonbench.api import Anonymizer, FaceBatch, MethodMeta

if TYPE_CHECKING:  # torch is imported where a method runs: building one costs no torch import
    import torch


def _per_image(batch: FaceBatch, fn) -> torch.Tensor:
    """Applies fn(H x W x 3 float32 image, i) -> image to every item."""
    import torch

    imgs = batch.images.permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([fn(np.ascontiguousarray(im), i) for i, im in enumerate(imgs)])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(batch.images.dtype)


class Original(Anonymizer):
    """Identity: returns the input. The reference row of every table."""

    meta = MethodMeta(paper="-", license="-")

    @property
    def identity(self) -> bool:
        """True unless a subclass replaces _generate: production then copies the originals
        instead of calling the method (anonbench.produce; the same bytes, without torch)."""
        return type(self)._generate is Original._generate

    def _generate(
        self, batch: FaceBatch, *, targets: Sequence[int] | None, generator: Any
    ) -> torch.Tensor:
        return batch.images.clone()


class GaussianBlur(Anonymizer):
    """Gaussian blur with a kernel x kernel window (paper: "Blur 9 by 9", "Blur 17 by 17").

    sigma is OpenCV's default for the kernel size, 0.3 * ((kernel - 1) / 2 - 1) + 0.8
    (1.7 for 9, 2.9 for 17), since the paper gives only the kernel size.
    """

    meta = MethodMeta(paper="CIAGAN (CVPR 2020) baseline", license="-")

    def __init__(self, kernel: int = 17, sigma: float = 0.0) -> None:
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"blur kernel must be odd and positive, got {kernel}")
        self.kernel = kernel
        self.sigma = sigma

    def config(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "sigma": self.sigma}

    def _generate(
        self, batch: FaceBatch, *, targets: Sequence[int] | None, generator: Any
    ) -> torch.Tensor:
        import cv2

        k = self.kernel
        return _per_image(
            batch,
            lambda im, i: cv2.GaussianBlur(
                im, (k, k), self.sigma, borderType=cv2.BORDER_REFLECT_101
            ),
        )


def _mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class Pixelate(Anonymizer):
    """Pixelation: the face region (bounding box of the mask) is resampled to a grid x grid
    image (area averaging) and blown back up with nearest neighbour.

    `grid` is the number of cells across the face, not the block size in pixels: the paper's
    FID ordering (8x8 worse than 16x16) only makes sense that way.
    """

    meta = MethodMeta(paper="CIAGAN (CVPR 2020) baseline", license="-")

    def __init__(self, grid: int = 16) -> None:
        if grid < 1:
            raise ValueError(f"pixelation grid must be positive, got {grid}")
        self.grid = grid

    def config(self) -> dict[str, Any]:
        return {"grid": self.grid}

    def _generate(
        self, batch: FaceBatch, *, targets: Sequence[int] | None, generator: Any
    ) -> torch.Tensor:
        import cv2

        masks = batch.masks[:, 0].cpu().numpy()

        def pix(im: np.ndarray, i: int) -> np.ndarray:
            bb = _mask_bbox(masks[i])
            if bb is None:
                return im
            x0, y0, x1, y1 = bb
            region = im[y0:y1, x0:x1]
            small = cv2.resize(region, (self.grid, self.grid), interpolation=cv2.INTER_AREA)
            out = im.copy()
            size = (x1 - x0, y1 - y0)
            out[y0:y1, x0:x1] = cv2.resize(small, size, interpolation=cv2.INTER_NEAREST)
            return out

        return _per_image(batch, pix)


class BlackMask(Anonymizer):
    """The face region filled with black."""

    meta = MethodMeta(paper="CIAGAN (CVPR 2020) baseline", license="-")

    def _generate(
        self, batch: FaceBatch, *, targets: Sequence[int] | None, generator: Any
    ) -> torch.Tensor:
        import torch

        return torch.zeros_like(batch.images)
