"""The contracts every plug-in answers to: anonymizers, protocols, detectors, landmarkers,
embedders. They are kept small on purpose; see DESIGN.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, runtime_checkable
from typing import Protocol as TypingProtocol

import numpy as np

if TYPE_CHECKING:  # torch is heavy: only the type checker needs it here
    import torch


@dataclass
class FaceBatch:
    """One face per item.

    images: B x 3 x H x W float32 in [0, 1], RGB.
    landmarks: B x 68 x 2 float32, pixel coordinates (x, y) in the image.
    masks: B x 1 x H x W float32, 1 = pixels the anonymizer may replace.
    boxes: B x 4 float32 (left, top, right, bottom) face boxes.
    identities: optional source identity per item (never used by anonymizers to cheat).
    keys: stable keys (e.g. relative image path + face index) so outputs map back to inputs.
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    keys: list[str]
    identities: list[str] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class MethodMeta:
    """Pinned metadata of a method: shown by `anonbench ls` and stored with every result."""

    paper: str = ""
    license: str = ""
    input_size: tuple[int, int] | None = None
    checkpoint_sha256: str = ""
    identity_conditioned: bool = False
    deterministic: bool = True
    # a caveat printed when the method runs and kept in the note of each of its result rows
    # (e.g. "demo checkpoint, not the paper's model"); without "; ", which joins notes
    note: str = ""


class Anonymizer:
    """Replaces the masked face region of each item; pixels outside the mask are unchanged.

    Subclasses implement `_generate` (the raw replacement); `anonymize` composites it so the
    outside-mask guarantee holds for every method.
    """

    name: str = ""
    meta: MethodMeta = MethodMeta()

    def anonymize(
        self,
        batch: FaceBatch,
        *,
        targets: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        import torch

        out = self._generate(batch, targets=targets, generator=generator)
        if out.shape != batch.images.shape:
            raise ValueError(
                f"{self.name}: output shape {tuple(out.shape)} != input {tuple(batch.images.shape)}"
            )
        m = batch.masks
        # where() rather than arithmetic alone: a NaN outside the mask must not leak through
        blended = out.clamp(0, 1) * m + batch.images * (1 - m)
        return torch.where(m > 0, blended, batch.images)

    def _generate(
        self,
        batch: FaceBatch,
        *,
        targets: Sequence[int] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Parameters that define this method's outputs (stored in provenance, cache keys)."""
        return {}


class Trainable(Anonymizer):
    """An anonymizer that can be trained."""

    def fit(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool | None  # None: a count or diagnostic with no better direction
    description: str


@dataclass
class FaceDetection:
    """One detected face in an image: box (l, t, r, b), score, and optional landmarks (68 from
    dlib's shape predictor, 5 from RetinaFace/MTCNN: check the shape)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None  # 68 x 2 or 5 x 2 float32


@runtime_checkable
class Detector(TypingProtocol):
    name: str
    version: str

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """image: H x W x 3 uint8 RGB. Returns faces, most confident first."""
        ...


@runtime_checkable
class Landmarker(TypingProtocol):
    name: str
    version: str

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 x 2 float32 pixel coordinates for the face in box."""
        ...


@runtime_checkable
class Embedder(TypingProtocol):
    name: str
    version: str
    dim: int

    def embed(
        self, images: Sequence[np.ndarray], fallback_box: tuple[float, float, float, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeds the face in each H x W x 3 uint8 RGB image (the one best overlapping
        fallback_box). Returns (N x dim L2-normalised float32, N bool "used the fallback box")."""
        ...


@dataclass
class RunContext:
    """What a protocol needs from the runner."""

    data_root: str | None
    out_dir: str
    cache_dir: str
    embedder: str
    seed: int = 0
    workers: int = 1
    limit_folds: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # protocols put what run.json must record here (e.g. the identity split)
    extra: dict[str, Any] = field(default_factory=dict)


class Protocol:
    """An evaluation protocol: fixed version, datasets, metrics, and `run`."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    datasets: ClassVar[tuple[str, ...]] = ()
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()

    def run(self, method: Anonymizer, ctx: RunContext) -> list[dict[str, Any]]:
        """Evaluates one method; returns tidy rows (see anonbench.results.COLUMNS). Work on
        the originals is shared between methods through the cache."""
        raise NotImplementedError
