"""Face kept scorer: does a recognizer's own detector still find the face in each output,
over the image's reference face? A destroyed face scores low (utility); the count of outputs
where it found none (it embedded the reference box instead) goes beside it."""

from __future__ import annotations

from typing import Any

import numpy as np

from anonbench.api import RunContext
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Needs, Pass, Scorer


class FaceKeptScorer(Scorer):
    """face_kept (% of outputs, bootstrap interval over images) and embedder_no_face (the
    count behind it) for one embedder; `groups`: resample whole identities in the interval."""

    name = "face_kept"
    specs = catalog.specs("face_kept", "embedder_no_face")

    def __init__(self, embedder: str, groups: bool = False) -> None:
        self.embedder, self.groups = embedder, groups
        self._items: list[dict[str, Any]] = []

    def needs(self) -> Needs:
        return Needs(embedders=(self.embedder,))

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        _, fell_back = out.embeddings(self.embedder)
        kept = (~fell_back).astype(np.float64) * 100
        self._items = [
            {"key": k, "evaluator": self.embedder, "face_kept": v}
            for k, v in zip(out.keys, kept, strict=True)
        ]
        return [
            MetricResult.from_values(
                "face_kept",
                self.embedder,
                kept,
                out.identities if self.groups else None,
                seed=ctx.seed,
                note="embedder_no_face is the count behind it",
            ),
            MetricResult.count("embedder_no_face", self.embedder, int(fell_back.sum()), len(kept)),
        ]

    def per_item(self) -> list[dict[str, Any]]:
        return list(self._items)
