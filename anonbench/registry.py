"""Typed registries of plug-ins, registered by name with a decorator.

Built-in entries are declared lazily as "module:attr" strings with a one-line description, so
listing them (`anonbench ls`) imports nothing heavy. Resolving a lazy name imports its module,
whose decorators register the real factories. Third-party methods come in through the
entry-point group ``anonbench.methods`` (each entry point names a module to import, or a
factory object to register under the entry point's name).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from anonbench.errors import UnknownNameError

T = TypeVar("T")


@dataclass
class Entry:
    name: str
    description: str
    factory: Callable[..., Any] | None = None  # None while only the lazy target is known
    lazy_target: str | None = None  # "package.module:attr"
    params: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> factory producing a T. Rejects duplicates and wrong types; suggests on typos."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry] = {}
        self._entry_point_group: str | None = None
        self._entry_points_loaded = False

    # -- declaration -------------------------------------------------------------------------
    def add_lazy(self, name: str, target: str, description: str) -> None:
        """Declares `name` to be registered when `target`'s module is imported."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if ":" not in target:
            raise ValueError(f"lazy target must look like 'module:attr', got {target!r}")
        self._entries[name] = Entry(name, description, lazy_target=target)

    def register(
        self, name: str, description: str = "", **params: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: registers a class (or factory) under `name`, with fixed `params`
        (variants such as blur17 are registered names that fix parameters)."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if (
                isinstance(factory, type)
                and self.base is not None
                and not issubclass(factory, self.base)
            ):
                raise TypeError(
                    f"{self.kind} {name!r}: {factory.__name__} is not a {self.base.__name__}"
                )
            existing = self._entries.get(name)
            if existing is not None and existing.factory is not None:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            desc = (
                description
                or (existing.description if existing else "")
                or _first_line(factory.__doc__)
            )
            target = existing.lazy_target if existing else None
            self._entries[name] = Entry(name, desc, factory, target, dict(params))
            return factory

        return deco

    def use_entry_points(self, group: str) -> None:
        self._entry_point_group = group

    # -- lookup ------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self._entry_point_group is None:
            return
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self._entry_point_group):
            if ep.name in self._entries:
                continue  # a plug-in cannot shadow a built-in name
            if ":" in ep.value:
                self._entries[ep.name] = Entry(
                    ep.name, f"plug-in ({ep.value})", lazy_target=ep.value
                )
            else:  # a module whose import registers its entries with the decorator
                importlib.import_module(ep.value)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def describe(self) -> Iterator[tuple[str, str]]:
        """(name, description) for every entry, without importing anything lazy."""
        for name in self.names():
            yield name, self._entries[name].description

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._entries

    def entry(self, name: str) -> Entry:
        self._load_entry_points()
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._entries))
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        e = self._entries[name]
        if e.factory is None:
            assert e.lazy_target is not None
            module_name, attr = e.lazy_target.split(":", 1)
            module = importlib.import_module(module_name)
            e = self._entries[name]
            if e.factory is None:  # not registered by decorator: the target is the factory
                e.factory = getattr(module, attr)
        return e

    def create(self, name: str, **kwargs: Any) -> T:
        e = self.entry(name)
        assert e.factory is not None
        obj = e.factory(**{**e.params, **kwargs})
        if self.base is not None and not isinstance(obj, self.base):
            raise TypeError(
                f"{self.kind} {name!r} built a {type(obj).__name__}, not a {self.base.__name__}"
            )
        if hasattr(obj, "name") and not getattr(obj, "name", ""):
            obj.name = name
        return obj


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


# The registries. Base classes are checked where cheap to import (api.py has no torch import).
from anonbench import api  # noqa: E402

METHODS: Registry[api.Anonymizer] = Registry("method", api.Anonymizer)
PROTOCOLS: Registry[api.Protocol] = Registry("protocol", api.Protocol)
DETECTORS: Registry[Any] = Registry("detector")
EMBEDDERS: Registry[Any] = Registry("embedder")
LANDMARKERS: Registry[Any] = Registry("landmarker")
# trainers: name -> main(argv: list[str]) -> int, run by `anonbench train <name> ...`
TRAINERS: Registry[Any] = Registry("trainer")
METHODS.use_entry_points("anonbench.methods")

register_method = METHODS.register
register_protocol = PROTOCOLS.register
register_detector = DETECTORS.register
register_embedder = EMBEDDERS.register
register_landmarker = LANDMARKERS.register


def _declare_builtins() -> None:
    """Lazy declarations of the built-in plug-ins (name -> module:attr, description)."""
    m = "anonbench.methods.classic"
    for name, target, desc in [
        ("original", f"{m}:Original", "identity: returns the input (the reference row)"),
        ("blur9", f"{m}:GaussianBlur", "Gaussian blur of the face region, kernel 9x9"),
        ("blur17", f"{m}:GaussianBlur", "Gaussian blur of the face region, kernel 17x17"),
        ("pixelate8", f"{m}:Pixelate", "face region resampled to an 8x8 grid"),
        ("pixelate16", f"{m}:Pixelate", "face region resampled to a 16x16 grid"),
        ("mask", f"{m}:BlackMask", "face region filled with black"),
        (
            "ciagan",
            "anonbench.methods.ciagan.anonymizer:CIAGAN",
            "CIAGAN (Maximov et al., CVPR 2020): landmarks + identity -> new face "
            "(default weights: a demo, see its MODEL_CARD.md)",
        ),
    ]:
        METHODS.add_lazy(name, target, desc)
    PROTOCOLS.add_lazy(
        "lfw",
        "anonbench.protocols.lfw:LFWVerification",
        "LFW verification, second image anonymized: TAR@FAR=0.001 and accuracy, 10 folds",
    )
    PROTOCOLS.add_lazy(
        "celeba",
        "anonbench.protocols.celeba:CelebAProtocol",
        "CelebA: detection rate, identity Recall@1 (PNCA, dlib, MobileFaceNet), FID",
    )
    PROTOCOLS.add_lazy(
        "landmark-attack",
        "anonbench.protocols.identity_attacks:LandmarkAttack",
        "CelebA: identity Recall@1 of a Proxy-NCA net trained on landmark drawings only",
    )
    PROTOCOLS.add_lazy(
        "faceswap",
        "anonbench.protocols.identity_attacks:FaceSwapCheck",
        "CelebA: are identity-conditioned outputs just their target identity?",
    )
    f = "anonbench.faces.dlib_faces"
    for reg, name, target, desc in [
        (DETECTORS, "dlib-hog", f"{f}:HOGDetector", "dlib HOG + linear SVM frontal face detector"),
        (DETECTORS, "dlib-mmod", f"{f}:MMODDetector", "dlib MMOD CNN face detector"),
        (
            DETECTORS,
            "retinaface",
            "anonbench.faces.retinaface:RetinaFaceDetector",
            "RetinaFace MobileNet-0.25 (WIDER FACE, Face-Detector-1MB weights; FPN + SSH heads)",
        ),
        (
            DETECTORS,
            "mtcnn",
            "anonbench.faces.mtcnn:MTCNNDetector",
            "MTCNN from facenet-pytorch 2.5.3 (weights ship in the package)",
        ),
        (LANDMARKERS, "dlib-68", f"{f}:Dlib68Landmarker", "dlib 68-point shape predictor"),
        (
            EMBEDDERS,
            "dlib-resnet",
            f"{f}:DlibResNetEmbedder",
            "dlib ResNet-29 face descriptor, 128-d, 5-point aligned 150x150 chips",
        ),
        (
            EMBEDDERS,
            "dlib-resnet-mmod",
            f"{f}:DlibResNetEmbedder",
            "dlib-resnet whose attacker tries the MMOD CNN detector before the fixed box",
        ),
        (
            EMBEDDERS,
            "mobilefacenet",
            "anonbench.faces.mobilefacenet:MobileFaceNetEmbedder",
            "MobileFaceNet (CASIA-WebFace), 128-d, 112x96 5-point aligned; weights by path",
        ),
        (
            EMBEDDERS,
            "facenet-vggface2",
            "anonbench.faces.facenet:FaceNetEmbedder",
            "FaceNet InceptionResnetV1 (VGGFace2 weights, must be on disk)",
        ),
        (
            EMBEDDERS,
            "facenet-casia",
            "anonbench.faces.facenet:FaceNetEmbedder",
            "FaceNet InceptionResnetV1 (CASIA-WebFace weights, must be on disk)",
        ),
    ]:
        reg.add_lazy(name, target, desc)
    TRAINERS.add_lazy(
        "ciagan",
        "anonbench.methods.ciagan.train:main",
        "train CIAGAN (generator, critic, identity discriminator)",
    )
    TRAINERS.add_lazy(
        "identifier",
        "anonbench.faces.pnca:train_main",
        "train the Proxy-NCA identity network on identity-labelled faces",
    )


_declare_builtins()
