"""Detection rate: is the anonymized face still a face, where it was?"""

from __future__ import annotations

from typing import Any

import numpy as np

from anonbench.api import Box, RunContext
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Needs, Pass, Scorer

DET_IOU = 0.5  # an output's face must overlap the detector's face on the original this much
REF_IOU = 0.3  # a detector's own face on the original must overlap the reference this much


def own_face(real: Pass, detector: str, key: str) -> Box | None:
    """`detector`'s face on the original of `key` over its frozen reference box (IoU >=
    REF_IOU), or None when it finds none there."""
    from anonbench.faces.mask import choose_box

    box, fell_back = choose_box(real.detections(detector, key), real.box(key), REF_IOU)
    return None if fell_back else box


def found_again(out: Pass, detector: str, key: str, box: Box) -> Box | None:
    """`detector`'s face on the output of `key` best overlapping `box` with IoU >= DET_IOU."""
    from anonbench.faces.mask import iou

    best = max(out.detections(detector, key), key=lambda b: iou(b, box), default=None)
    return best if best is not None and iou(best, box) >= DET_IOU else None


class DetectionScorer(Scorer):
    """detection_rate per detector: % of outputs in which it finds a face with IoU >= DET_IOU
    to its own face on the original (originals where it finds none over the reference face
    are left out and counted in original_not_detected). Detectors that cannot run
    (`unavailable`: name -> why) give unavailable rows."""

    name = "detection"
    specs = catalog.specs("detection_rate", "original_not_detected")

    def __init__(self, detectors: list[str], unavailable: dict[str, str] | None = None) -> None:
        self.detectors = list(detectors)
        self.unavailable = dict(unavailable or {})
        self._items: list[dict[str, Any]] = []

    def needs(self) -> Needs:
        return Needs(detectors=tuple(self.detectors))

    def prepare(self, real: Pass, split: Any, ctx: RunContext) -> None:
        # each detector's own face on each original, once per run (boxes frozen)
        self.real = real
        self.faces = {d: {k: own_face(real, d, k) for k in real.keys} for d in self.detectors}

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        res: list[MetricResult] = []
        self._items = []
        for d in self.detectors:
            found: list[float] = []
            missing = 0
            for k in out.keys:
                box = self.faces[d][k]
                if box is None:
                    missing += 1
                    continue
                found.append(100.0 * (found_again(out, d, k, box) is not None))
                self._items.append({"key": k, "evaluator": d, "detection_rate": found[-1]})
            notes = []
            if out.records and missing == len(out.records):
                notes.append(f"{d} found no original face at the reference face")
                print(f"warning: {out.label}: {notes[-1]}: detection rate n/a")
            note = "; ".join(x for x in [*notes, out.note] if x)
            vals = np.array(found, np.float64)
            res.append(
                MetricResult.from_values("detection_rate", d, vals, seed=ctx.seed, note=note)
            )
            res.append(MetricResult.count("original_not_detected", d, missing, len(out.records)))
        res += [
            MetricResult.unavailable("detection_rate", n, w) for n, w in self.unavailable.items()
        ]
        return res

    def per_item(self) -> list[dict[str, Any]]:
        return list(self._items)
