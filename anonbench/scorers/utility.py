"""Utility: is the face's geometry kept? Per landmarker (dlib-68, mediapipe, ...): landmark
NME, head-pose error and expression change of the output against the original
(anonbench.metrics.utility), with failures counted at the metric's ceiling.

Per image: the landmarker's detector's face on the original over the reference face (none:
left out), its landmarks there (none: left out); on the output, the detector's face with IoU
>= DET_IOU to the original's (the detection-rate rule), and its landmarks. An output without
either is a failure: counted at the ceiling (never dropped from the mean) and in
landmarks_no_face."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anonbench.api import Box, RunContext
from anonbench.metrics import catalog
from anonbench.metrics.catalog import EXPRESSION_CEILING, NME_CEILING, POSE_CEILING
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Needs, Pass, Scorer
from anonbench.scorers.detection import found_again, own_face

CEILINGS = {
    "landmark_nme": NME_CEILING,
    "pose_error": POSE_CEILING,
    "expression_change": EXPRESSION_CEILING,
}


def landmark_detector(landmarker: Any) -> str:
    """The detector a landmarker works with: its `detector` attribute, else dlib-hog (the
    analysis detector, dlib-68's partner)."""
    return str(getattr(landmarker, "detector", "dlib-hog"))


def cached_landmarks(cache: Any, landmarker: Any, image: np.ndarray, box: Box) -> np.ndarray:
    """K x 2 float32 landmarks of the face at box (0 x 2: none found), cached by the image's
    content, the landmarker's version and the box rounded to 0.1 pixel."""
    from anonbench.cache import array_digest
    from anonbench.faces.cached import box_key

    comp = f"landmarks-{landmarker.name}"
    key = f"{array_digest(image)}/box{box_key(box)}"
    hit = cache.get(comp, landmarker.version, key)
    if hit is not None:
        return hit["landmarks"]
    lm = np.asarray(landmarker.landmarks(image, tuple(float(v) for v in box)), np.float32)
    lm = lm.reshape(-1, 2)
    cache.put(comp, landmarker.version, key, {"landmarks": lm})
    return lm


@dataclass
class _Acc:
    """Per-image utility values of one landmarker (NaN where the output failed)."""

    keys: list[str] = field(default_factory=list)
    failed: list[bool] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in CEILINGS})
    axes: list[tuple[float, float, float]] = field(default_factory=list)
    mouth_eye: list[tuple[float, float]] = field(default_factory=list)
    left_out: int = 0

    def add(self, key: str, failed: bool, nme: float, pose: float, expression: float) -> None:
        self.keys.append(key)
        self.failed.append(failed)
        for m, v in zip(CEILINGS, (nme, pose, expression), strict=True):
            self.values[m].append(v)


def _measure(acc: _Acc, key: str, lm_o: np.ndarray, lm_a: np.ndarray, shape: tuple) -> None:
    """NME, pose and expression of output landmarks lm_a against the original's lm_o."""
    from anonbench.metrics import utility as U

    h, w = shape[:2]
    rot_o, rot_a = U.head_pose(lm_o, h, w), U.head_pose(lm_a, h, w)
    pose = math.nan  # a failed fit: at the ceiling
    if rot_o is not None and rot_a is not None:
        d = U.pose_difference(rot_o, rot_a)
        pose = d.angle
        acc.axes.append((d.yaw, d.pitch, d.roll))
    e = U.expression_change(lm_a, lm_o)
    acc.mouth_eye.append((e.mouth, e.eye))
    acc.add(key, False, float(U.nme(lm_a, lm_o)), pose, e.value)


class UtilityScorer(Scorer):
    """landmark_nme, pose_error, expression_change and landmarks_no_face per landmarker
    (`landmarkers`: name -> landmarker); `unavailable` (name -> why): unavailable rows."""

    name = "utility"
    specs = catalog.specs("landmark_nme", "pose_error", "expression_change", "landmarks_no_face")

    def __init__(self, landmarkers: dict[str, Any], unavailable: dict[str, str] | None = None):
        self.landmarkers = dict(landmarkers)
        self.unavailable = dict(unavailable or {})
        self._acc: dict[str, _Acc] = {}

    def needs(self) -> Needs:
        dets = (landmark_detector(lm) for lm in self.landmarkers.values())
        return Needs(detectors=tuple(dict.fromkeys(dets)))

    def prepare(self, real: Pass, split: Any, ctx: RunContext) -> None:
        """Each landmarker's (face box, landmarks) on every original, or None (left out)."""
        from anonbench.cache import Cache

        cache = Cache(ctx.cache_dir)
        self.real = real
        self.original: dict[str, dict[str, tuple[Box, np.ndarray] | None]] = {}
        for k in real.keys:
            image = None  # read once for every landmarker, and not kept
            for name, lmk in self.landmarkers.items():
                box = own_face(real, landmark_detector(lmk), k)
                found = None
                if box is not None:
                    image = real.load(k) if image is None else image
                    lm = cached_landmarks(cache, lmk, image, box)
                    found = (box, lm) if len(lm) else None
                self.original.setdefault(name, {})[k] = found

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        from anonbench.cache import Cache

        cache = Cache(ctx.cache_dir)
        self._acc = {name: _Acc() for name in self.landmarkers}
        for k in out.keys:  # images outer, landmarkers inner: each output read once
            output = None
            for name, lmk in self.landmarkers.items():
                acc, orig = self._acc[name], self.original[name][k]
                if orig is None:
                    acc.left_out += 1
                    continue
                box_o, lm_o = orig
                best = found_again(out, landmark_detector(lmk), k, box_o)
                lm_a = np.zeros((0, 2), np.float32)
                if best is not None:
                    output = out.load(k) if output is None else output
                    lm_a = cached_landmarks(cache, lmk, output, best)
                if output is None or len(lm_a) != len(lm_o):
                    acc.add(k, True, math.nan, math.nan, math.nan)
                else:
                    _measure(acc, k, lm_o, lm_a, output.shape)
        res: list[MetricResult] = []
        for name, lmk in self.landmarkers.items():
            res += self._results(name, landmark_detector(lmk), self._acc[name], out.note, ctx.seed)
        for name, why in self.unavailable.items():
            res += [MetricResult.unavailable(m, name, why) for m in CEILINGS]
        return res

    @staticmethod
    def _results(name: str, det: str, a: _Acc, doubt: str, seed: int) -> list[MetricResult]:
        """The three metrics (with ceiling) and the failure count of one landmarker."""
        from anonbench.metrics import utility as U

        fail = np.array(a.failed, bool)
        n_fail = int(fail.sum())
        rule = (
            f"{n_fail}/{len(fail)} outputs without a {det} face or {name} landmarks counted "
            "at the ceiling {ceiling:g}"
        )
        if a.left_out:
            rule += f"; {a.left_out} originals without a {det} face or landmarks left out"
        pose = "mean |yaw|, |pitch|, |roll| difference {:.1f}, {:.1f}, {:.1f} deg"
        expr = "mean mouth-ratio change {:.3f}, eye-ratio change {:.3f}"
        extra = {
            "pose_error": pose.format(*np.mean(a.axes, axis=0)) if a.axes else "",
            "expression_change": expr.format(*np.mean(a.mouth_eye, axis=0)) if a.mouth_eye else "",
        }
        res = []
        for metric, ceiling in CEILINGS.items():
            v = U.with_ceiling(np.array(a.values[metric], np.float64), fail, ceiling)
            notes = [rule.format(ceiling=ceiling), extra.get(metric, ""), doubt]
            note = "; ".join(x for x in notes if x)
            res.append(MetricResult.from_values(metric, name, v, seed=seed, note=note))
        res.append(MetricResult.count("landmarks_no_face", name, n_fail, len(fail)))
        return res

    def per_item(self) -> list[dict[str, Any]]:
        """Per output and landmarker: the three values as averaged (ceiling applied)."""
        from anonbench.metrics import utility as U

        out = []
        for name, a in self._acc.items():
            fail = np.array(a.failed, bool)
            capped = {
                m: U.with_ceiling(np.array(a.values[m], np.float64), fail, c)
                for m, c in CEILINGS.items()
            }
            for i, k in enumerate(a.keys):
                vals = {m: float(capped[m][i]) for m in CEILINGS}
                out.append({"key": k, "evaluator": name, **vals, "failed": a.failed[i]})
        return out
