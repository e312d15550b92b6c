"""The contracts every plug-in answers to: anonymizers, protocols, detectors, landmarkers,
embedders. They are kept small on purpose; see DESIGN.md."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, runtime_checkable
from typing import Protocol as TypingProtocol

import numpy as np

from anonbench.log import get_logger

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
    # the pixels the method may change: "mask" (the CIAGAN face mask of each face), "box" (each
    # face box) or "image" (anything; pre-computed outputs). The outside-region test follows it.
    region: str = "mask"


def region_mask(batch: FaceBatch, region: str) -> torch.Tensor:
    """B x 1 x H x W mask of the pixels a method declaring `region` may change: the CIAGAN
    face mask ("mask"), the face box ("box") or everything ("image")."""
    import torch

    if region == "mask":
        return batch.masks
    if region == "image":
        return torch.ones_like(batch.masks)
    if region == "box":
        b, _, h, w = batch.masks.shape
        ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
        xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
        bx = batch.boxes.float().view(b, 4, 1, 1)
        inside = (
            (xs >= bx[:, 0].floor())
            & (xs < bx[:, 2].ceil())
            & (ys >= bx[:, 1].floor())
            & (ys < bx[:, 3].ceil())
        )
        return inside.unsqueeze(1).to(batch.masks.dtype)
    raise ValueError(f"unknown method region {region!r} (mask, box or image)")


class Anonymizer:
    """Replaces the face region of each item that `meta.region` declares (the CIAGAN mask by
    default); pixels outside it are unchanged.

    Subclasses implement `_generate` (the raw replacement); `anonymize` composites it into the
    declared region so the outside-region guarantee holds for every method.
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
        m = region_mask(batch, self.meta.region)
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


METRIC_ROLES = ("privacy", "utility", "realism", "count")


@dataclass(frozen=True)
class MetricSpec:
    """The single source of a metric's direction, display and default `check` tolerance."""

    name: str
    higher_is_better: bool | None  # None: a count or diagnostic with no better direction
    description: str
    label: str = ""  # short display name (reports, console); defaults to name
    decimals: int = 2  # display decimals of the value
    # allowed change in the worse direction when `anonbench check` is given no --tolerance;
    # None: not checked by default (counts, diagnostics)
    tolerance: float | None = None
    # "percent" (0-100), "fraction" (0-1), "count" (shown as value/n) or "" (a plain number)
    unit: str = ""
    # what the metric measures (METRIC_ROLES): "privacy" (an attacker's success), "utility"
    # (the face kept), "realism" (FID, KID) or "count" (a diagnostic); None: not declared (a
    # third-party spec), `anonbench check` then infers it from direction and unit
    role: str | None = None

    def __post_init__(self) -> None:
        if self.role is not None and self.role not in METRIC_ROLES:
            raise ValueError(
                f"MetricSpec {self.name!r}: role {self.role!r} is not one of "
                f"{', '.join(METRIC_ROLES)} (or None)"
            )

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Option:
    """A typed protocol option (`--option name=value`): shown by `anonbench ls`, checked.
    An int or float option is a finite number in [minimum, maximum] (None: unbounded); no
    option takes a negative number unless it declares `minimum`; `check` refuses what else
    is wrong with a value."""

    name: str
    type: type  # str | int | float | bool
    default: Any
    help: str
    minimum: float | None = 0
    maximum: float | None = None
    # called with a given value once typed and in range (AnonbenchError when it is wrong), so
    # a value only the protocol understands is refused before any work, with the others
    check: Callable[[Any], None] | None = field(default=None, compare=False, repr=False)


@dataclass
class FaceDetection:
    """One detected face in an image: box (l, t, r, b), score, and optional landmarks (68 from
    dlib's shape predictor, 5 from RetinaFace/MTCNN: check the shape)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None  # 68 x 2 or 5 x 2 float32


Box = tuple[float, float, float, float]


@runtime_checkable
class Evaluator(TypingProtocol):
    """What detectors, recognizers and trained attackers share: a name, a version that keys
    cached results (weights hash and every output-changing parameter in it), and a device.
    Torch evaluators take `device` and `batch_size` constructor arguments; dlib ones run on
    the CPU. A missing weight file is one clear MissingWeightsError naming the file."""

    name: str
    version: str


def runs_in_workers(evaluator: Any) -> bool:
    """Whether an evaluator (instance or class) declares `cpu_workers = True`."""
    return bool(getattr(evaluator, "cpu_workers", False))


@runtime_checkable
class Detector(Evaluator, TypingProtocol):
    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """image: H x W x 3 uint8 RGB. Returns faces, most confident first."""
        ...

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """Batched `detect` (same results as calling it per image, to float tolerance)."""
        ...


@runtime_checkable
class Landmarker(TypingProtocol):
    name: str
    version: str

    def landmarks(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """K x 2 float32 pixel coordinates for the face in box, K fixed per landmarker (68 for
        dlib-68, 468 for mediapipe); 0 x 2 when it finds no face there. An optional
        `detector` attribute names the detector whose boxes it expects (default dlib-hog)."""
        ...


@runtime_checkable
class Embedder(Evaluator, TypingProtocol):
    """A recognizer. `boxes` gives, per image, the reference face: the face detected on the
    image's own original (or a fallback box derived from the dataset). The embedder embeds
    the face its own detector finds best overlapping that box, or the box itself when it
    finds none (an attacker that does not give up) and says so."""

    dim: int

    def embed(
        self, images: Sequence[np.ndarray], boxes: Sequence[Box] | Box
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeds the face in each H x W x 3 uint8 RGB image. `boxes`: one reference box per
        image (a single box applies to all). Returns (N x dim L2-normalised float32, N bool
        "its detector found no face there: embedded the reference box")."""
        ...


@runtime_checkable
class TrainedAttacker(Embedder, TypingProtocol):
    """An embedder trained by the protocol on the train identities before use (Proxy-NCA,
    the adaptive attacker, the landmark attacker). `training` says on what: "real" (real
    train images), "real+anonymized" (plus the method's outputs of them)."""

    training: str

    def fit(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[Box],
        labels: Sequence[str],
        *,
        cache_dir: str,
        quiet: bool = False,
    ) -> None:
        """Trains (or loads the cached result of training on exactly these inputs)."""
        ...


@dataclass(frozen=True)
class Resources:
    """What a run lends every plug-in, decided once (anonbench.runner) and never changed:
    where torch runs, how big its batches are, how many worker processes, the cache, the
    executor of both stages, the seed, whether progress bars show, the logger that warnings
    go to, and the analysis detector. Plug-ins receive the parts their constructor takes
    through one builder (anonbench.plugins.build)."""

    device: str = "cpu"
    batch_size: int = 32
    workers: int = 1
    cache_dir: str = ""
    # anonbench.executors.Executor (local pool or Ray); None = the local pool of `workers`
    executor: Any = None
    seed: int = 0
    quiet: bool = False  # no progress bars (warnings still go to `logger`)
    compile: bool = False  # torch.compile for methods that take it (CIAGAN, on CUDA)
    logger: logging.Logger = field(default_factory=get_logger)
    # the detector of the originals' analysis (which faces methods anonymize, the reference
    # boxes); dlib's 68 landmarks are placed in its boxes (anonbench.faces.analysis)
    analysis_detector: str = "dlib-hog"

    def offer(self) -> dict[str, Any]:
        """The constructor arguments a plug-in may take from the run (by parameter name)."""
        return {"device": self.device, "batch_size": self.batch_size, "seed": self.seed}

    def evaluation(self) -> dict[str, Any]:
        """The keyword arguments of anonbench.evaluate.evaluate_images."""
        return {
            "cache_dir": self.cache_dir,
            "workers": self.workers,
            "device": self.device,
            "batch_size": self.batch_size,
            "quiet": self.quiet,
            "executor": self.executor,
        }


# the RunContext attributes that mirror a field of Resources (protocols read ctx.<name>)
_RESOURCE_FIELDS = ("cache_dir", "seed", "workers", "device", "batch_size", "quiet", "executor")


@dataclass
class RunContext:
    """What a protocol needs from the runner: the data, where to write, its typed options,
    the originals' analyses, and the run's Resources (`ctx.resources`; its fields are also
    readable as ctx.device, ctx.batch_size, ctx.workers, ctx.cache_dir, ctx.executor,
    ctx.seed and ctx.quiet). Built with `resources=`, those fields come from it."""

    data: Any  # anonbench.data.datasets.Dataset: the records, their kind and label
    out_dir: str
    cache_dir: str = ""
    # the LFW attacker; also the protocol option `embedder` where the protocol declares one
    embedder: str = "dlib-resnet"
    seed: int = 0
    workers: int = 1
    device: str = "cpu"
    batch_size: int = 32
    options: dict[str, Any] = field(default_factory=dict)  # parsed, typed protocol options
    quiet: bool = False
    originals: Any = None  # anonbench.evaluate.Originals: analyses and reference faces
    # protocols put what run.json must record here (e.g. the identity split)
    extra: dict[str, Any] = field(default_factory=dict)
    # anonbench.executors.Executor that runs the shards of both stages (local pool or Ray);
    # protocols reach it through evaluate.run_kwargs, None = the local pool of `workers`
    executor: Any = None
    resources: Resources | None = None

    def __post_init__(self) -> None:
        if self.resources is None:  # built field by field (tests, older callers)
            self.resources = Resources(**{k: getattr(self, k) for k in _RESOURCE_FIELDS})
        else:  # the run's one Resources: the mirrored fields follow it
            for k in _RESOURCE_FIELDS:
                setattr(self, k, getattr(self.resources, k))


class Protocol:
    """An evaluation protocol: it never anonymizes. It names the records (and target
    identities) whose anonymized versions it needs; the runner produces them once into an
    output store (anonbench.produce), and `evaluate` scores that store against the originals."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    # dataset kinds it accepts (anonbench.data.datasets.KINDS); the first is the default kind
    # of a plain --data path
    datasets: ClassVar[tuple[str, ...]] = ()
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    # typed `--option name=value` settings, checked by anonbench.options.parse_options
    options: ClassVar[tuple[Option, ...]] = ()

    def prepare(self, ctx: RunContext) -> None:
        """Work on the originals shared by every method (analyses, trained attackers)."""

    def records(self, method: Anonymizer, ctx: RunContext) -> list[Any]:
        """The dataset records (anonbench.data.records.ImageRecord) to anonymize."""
        raise NotImplementedError

    def targets(self, method: Anonymizer, ctx: RunContext) -> dict[str, int] | None:
        """Explicit target identity per record key (identity-conditioned methods), or None
        for the method's own choice."""
        return None

    def evaluate(self, method: Anonymizer, store: Any, ctx: RunContext) -> list[dict[str, Any]]:
        """Scores one method's output store (anonbench.produce.OutputStore); returns tidy
        rows (see anonbench.results.COLUMNS)."""
        raise NotImplementedError
