"""Leaks: the images in which the anonymizer found no face and returned them unchanged."""

from __future__ import annotations

from typing import Any

from anonbench.api import RunContext
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Pass, Scorer


class LeaksScorer(Scorer):
    """faces_missed: outputs the method left unchanged (a missing output file of a folder
    store counts too), under one evaluator name for every method (the analysis detector)."""

    name = "leaks"
    specs = catalog.specs("faces_missed")

    def __init__(self, evaluator: str = "dlib-hog") -> None:
        self.evaluator = evaluator
        self._missed: list[str] = []
        self._keys: list[str] = []

    def missed(self, out: Pass) -> list[str]:
        """Keys of out.records the method missed (from its output store)."""
        return list(out.store.missed(out.records))

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        self._missed, self._keys = self.missed(out), out.keys
        external = bool(getattr(out.store, "external", False))
        note = "missing output files count as missed" if external else None
        return [
            MetricResult.count(
                "faces_missed", self.evaluator, len(self._missed), len(out.records), note
            )
        ]

    def per_item(self) -> list[dict[str, Any]]:
        missed = set(self._missed)
        return [
            {"key": k, "evaluator": self.evaluator, "faces_missed": int(k in missed)}
            for k in self._keys
        ]
