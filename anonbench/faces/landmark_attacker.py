"""The landmark attacker (CIAGAN section 4.4): identity from landmarks alone.

For each image, the dlib HOG face best overlapping the image's reference box (IoU >= 0.3;
68-point landmarks, analysis cached by content) is drawn as the CIAGAN landmark image (jaw,
nose bridge, inner lips in the official 178x218 crop, `anonbench.methods.landmark_input`)
and the drawing is embedded by a Proxy-NCA net trained on drawings of real train identities.
An image with no face there has nothing to draw: a zero vector, flagged (`fell_back`), which
the protocol counts as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anonbench.errors import AnonbenchError
from anonbench.faces.pnca import (
    CROP_VERSION,
    Box,
    PNCAAttackerBase,
    PNCAConfig,
    cached_train,
    per_image_boxes,
)

MIN_IOU = 0.3
# The reference box of a drawing, in its 178x218 frame. By construction the eye midpoint sits at
# (89, 109) and the lines lie below it (on 222 CelebA faces, 5th-95th percentiles: y 99-192,
# x 27-152); this box's crop (2x its side, see pnca.CROP_FACTOR) is the full-width square at
# the bottom of the frame, rows 40-217, which holds them all.
DRAWING_BOX: Box = (44.5, 84.5, 133.5, 173.5)
DRAWING_VERSION = "ciagan-lines-178x218"


def landmarks_at_box(analyzer: Any, image: np.ndarray, box: Box) -> np.ndarray | None:
    """The 68 landmarks of the dlib face best overlapping box (IoU >= MIN_IOU), or None when
    no face overlaps it that much (the landmark attackers' rule)."""
    from anonbench.faces.mask import choose_box

    a = analyzer(image)
    if len(a) == 0:
        return None
    boxes = [tuple(float(v) for v in b) for b in a.boxes]
    chosen, fell_back = choose_box(boxes, tuple(float(v) for v in box), MIN_IOU)  # type: ignore[arg-type]
    return None if fell_back else a.landmarks[boxes.index(chosen)]


class LandmarkAttacker(PNCAAttackerBase):
    """`pnca-landmarks` (a TrainedAttacker, training "real"): a Proxy-NCA net on CIAGAN
    landmark drawings of the dlib face at each reference box."""

    name = "pnca-landmarks"
    training = "real"

    def __init__(
        self,
        *,
        device: str = "cpu",
        batch_size: int = 256,
        epochs: int = PNCAConfig.epochs,
        seed: int = 0,
        checkpoint: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        from anonbench.cache import Cache
        from anonbench.faces.analysis import FaceAnalyzer

        super().__init__(
            device=device, batch_size=batch_size, epochs=epochs, seed=seed, checkpoint=checkpoint
        )
        # analyses are cached under cache_dir, or under fit's cache_dir once fit has run
        self.analyzer = FaceAnalyzer(
            cache=Cache(cache_dir) if cache_dir is not None else Cache(enabled=False)
        )
        self.fit_info: dict[str, Any] = {}

    @property
    def version(self) -> str:
        c = self.config
        trained = self.net.digest[:16] if self.net is not None else f"untrained-e{c.epochs}"
        return (
            f"{self.name}/{self.analyzer.version}/{DRAWING_VERSION}/{CROP_VERSION}/"
            f"{trained}-s{c.seed}"
        )

    def drawing(self, image: np.ndarray, box: Box) -> np.ndarray | None:
        """The 218 x 178 x 3 uint8 landmark drawing of the dlib face best overlapping box
        (IoU >= 0.3), or None when there is none."""
        from anonbench.methods.landmark_input import crop_face, landmark_rgb

        lm = landmarks_at_box(self.analyzer, image, box)
        return None if lm is None else landmark_rgb(crop_face(image, lm).lines)

    def drawings(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> list[np.ndarray | None]:
        return [
            self.drawing(im, b)
            for im, b in zip(images, per_image_boxes(boxes, images), strict=True)
        ]

    def fit(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[Box],
        labels: Sequence[str],
        *,
        cache_dir: str,
        quiet: bool = False,
    ) -> None:
        """Draws the train images' landmarks (images without a face at their box are left
        out, counted in `fit_info`) and trains on the drawings (cached by content)."""
        from anonbench.cache import Cache

        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if self.analyzer.cache.enabled is False:
            self.analyzer.cache = Cache(cache_dir)
        if self.checkpoint is not None:
            return
        drawn = self.drawings(images, boxes)
        keep = [i for i, d in enumerate(drawn) if d is not None]
        self.fit_info = {
            "train_images": len(images),
            "train_images_without_face": len(images) - len(keep),
        }
        if len({labels[i] for i in keep}) < 2:
            raise AnonbenchError(
                f"{self.name}: dlib found faces to draw in {len(keep)} of {len(images)} train "
                "images, of fewer than 2 identities: nothing to train on"
            )
        self.net = cached_train(
            cache_dir,
            [drawn[i] for i in keep],  # type: ignore[misc]
            [labels[i] for i in keep],
            self.config,
            f"{self.name} (landmark drawings of real train images)",
            quiet,
            boxes=DRAWING_BOX,
            device=self.device,
            batch_size=self.batch_size,
        )

    def embed(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N x dim embeddings of the drawings, N bool "no face at the box": zero vector)."""
        if self.net is None:
            raise AnonbenchError(f"{self.name}: call fit() (or give a checkpoint) before embed()")
        drawn = self.drawings(images, boxes)
        missing = np.array([d is None for d in drawn], bool)
        emb = np.zeros((len(images), self.net.dim), np.float32)
        found = [d for d in drawn if d is not None]
        if found:
            emb[~missing] = self.net.embed_boxes(found, DRAWING_BOX)
        return emb, missing
