"""The scorer contract: one metric family, composed by protocols (see DESIGN.md, "Evaluation
layer").

A protocol is a dataset kind + a split + a list of scorers + options; it holds no metric code.
A run goes, per protocol:

1. ``needs = Needs.union(s.needs() for s in scorers)``: the detectors, embedders and shared
   features every scorer asks for, so each runs once per image (one pass, not one per scorer);
2. ``real = build_pass(...)`` over the originals of the scored records (anonbench.scorers.passes),
   with the reference boxes frozen first (``Originals.freeze``): every later use of an
   original's reference face (gallery, query, trained attacker) sees the same box;
3. ``s.prepare(real, split, ctx)`` once per run: galleries, trained attackers, real features;
4. per method: ``out = build_pass(...)`` over its output store (same needs, same frozen boxes),
   then ``s.score(out, ctx) -> list[MetricResult]`` and, optionally, ``s.per_item()``: the
   per-image (or per-pair) values behind those results, for the per-method score CSVs.

A scorer is like a torchmetrics Metric / detectron2 DatasetEvaluator: it keeps its prepared
state between calls; ``score`` never mutates the pass. ``specs`` name catalog entries
(anonbench.metrics.catalog), never new MetricSpecs. Scorers never print results; they return
MetricResults (anonbench.metrics.result) that the protocol turns into rows.

Unit tests build a :class:`Pass` by hand (no images, no dlib): ``Pass(label, records, images,
boxes)`` with :class:`ImageAnalysis` values, ``loader=None`` unless the scorer reads pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from anonbench.api import Box, MetricSpec, RunContext
from anonbench.data.records import ImageRecord
from anonbench.metrics.result import MetricResult


def _merge(*groups: Iterable[str]) -> tuple[str, ...]:
    """Names of every group, first occurrence first (a stable union)."""
    return tuple(dict.fromkeys(n for g in groups for n in g))


@dataclass(frozen=True)
class Needs:
    """What a scorer needs computed per image of a pass: detector boxes, embeddings (the
    per-image recognizers; trained attackers are the scorer's own business), and shared
    per-set features by name (e.g. "inception": FID/KID features)."""

    detectors: tuple[str, ...] = ()
    embedders: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            _merge(self.detectors, other.detectors),
            _merge(self.embedders, other.embedders),
            _merge(self.features, other.features),
        )

    @staticmethod
    def union(needs: Iterable[Needs]) -> Needs:
        out = Needs()
        for n in needs:
            out = out | n
        return out


@dataclass
class ImageAnalysis:
    """One image's results in a pass: `error` (unreadable: no results), detector boxes
    (name -> N x 4) and embeddings (name -> (vector, fell_back: the embedder found no face
    and embedded the reference box))."""

    error: str | None = None
    dets: dict[str, np.ndarray] = field(default_factory=dict)
    embs: dict[str, tuple[np.ndarray, bool]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageAnalysis:
        """From one anonbench.evaluate.evaluate_images result."""
        return cls(d.get("error"), dict(d.get("dets", {})), dict(d.get("embs", {})))


@dataclass(frozen=True)
class SetFeatures:
    """Shared per-set features of a pass by name (e.g. Inception pool3 for FID and KID):
    `compute(keys)` -> N x D (cached by content; raises AnonbenchError when the extractor
    cannot run), `source`: what produced them (weights), for notes."""

    compute: Callable[[Sequence[str]], np.ndarray]
    source: str = ""


@dataclass
class Pass:
    """The per-image analysis of one set of images: the real originals (label "real") or one
    method's outputs (label = the method's name, `method` and `store` set).

    records: the scored records, in order (for an output pass: those readable in both passes);
    images: key -> ImageAnalysis; boxes: key -> (reference box, True when it is the fallback
    box), frozen at prepare and shared by the real pass and every output pass; loader: key ->
    H x W x 3 uint8 image (None: a synthetic pass without pixels); features: name ->
    SetFeatures, the shared per-set features (computed once per set of keys); note: a doubt
    every privacy/utility row of this pass carries (most originals without a face)."""

    label: str
    records: list[ImageRecord]
    images: dict[str, ImageAnalysis]
    boxes: Mapping[str, tuple[Box, bool]]
    loader: Callable[[str], np.ndarray] | None = None
    refs: Mapping[str, Any] = field(default_factory=dict)  # key -> ImageRef (attackers)
    features: Mapping[str, SetFeatures] = field(default_factory=dict)
    method: Any = None  # anonbench.api.Anonymizer of an output pass
    store: Any = None  # anonbench.produce.OutputStore of an output pass
    note: str = ""

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.records]

    @property
    def identities(self) -> list[str]:
        return [r.identity for r in self.records]

    def box(self, key: str) -> Box:
        """The frozen reference box of `key`."""
        return self.boxes[key][0]

    def fell_back(self, key: str) -> bool:
        """True when `key`'s original had no detected face (its box is the fallback box)."""
        return bool(self.boxes[key][1])

    def detections(self, detector: str, key: str) -> list[Box]:
        """The boxes `detector` found on `key`'s image, as float tuples."""
        return [tuple(float(v) for v in b) for b in self.images[key].dets[detector]]  # type: ignore[misc]

    def embeddings(
        self, embedder: str, keys: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N x dim embeddings, N bool fell_back) of `embedder` over keys (default: all)."""
        ks = self.keys if keys is None else list(keys)
        if not ks:
            return np.zeros((0, 0), np.float32), np.zeros(0, bool)
        e = [self.images[k].embs[embedder] for k in ks]
        return np.stack([v for v, _ in e]), np.array([bool(f) for _, f in e])

    def load(self, key: str) -> np.ndarray:
        if self.loader is None:
            raise RuntimeError(f"pass {self.label!r} has no images (a synthetic pass)")
        return self.loader(key)

    def items(self, keys: Sequence[str] | None = None) -> list[tuple[str, Any, Box]]:
        """(key, ImageRef, frozen reference box) items, for trained attackers' embed calls."""
        ks = self.keys if keys is None else list(keys)
        return [(k, self.refs[k], self.box(k)) for k in ks]

    def subset(self, keys: Iterable[str]) -> Pass:
        """The same pass restricted to `keys` (in this pass's order)."""
        want = set(keys)
        return Pass(
            self.label,
            [r for r in self.records if r.key in want],
            self.images,
            self.boxes,
            self.loader,
            self.refs,
            self.features,
            self.method,
            self.store,
            self.note,
        )


class Scorer:
    """One metric family. Subclasses set `name` and `specs` (catalog entries) and implement
    `needs`, `prepare` and `score`; `per_item` is optional.

    State between `prepare` and `score` lives on the instance (galleries, fitted attackers);
    a protocol builds fresh scorers per run."""

    name: ClassVar[str] = ""
    specs: ClassVar[tuple[MetricSpec, ...]] = ()

    def needs(self) -> Needs:
        """The per-image detectors/embedders and per-set features this scorer reads."""
        return Needs()

    def prepare(self, real: Pass, split: Any, ctx: RunContext) -> None:
        """Once per run, on the real pass (frozen boxes) and the split (anonbench.splits.Split
        or None): galleries, trained attackers, real features. Default: keeps `real`."""
        self.real = real

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        """The results of one method's output pass (out.records are scored)."""
        raise NotImplementedError

    def per_item(self) -> list[dict[str, Any]]:
        """Per-item values behind the last `score` call, long format: one dict per item and
        evaluator with at least "key", "evaluator" and one column per metric; [] = none."""
        return []
