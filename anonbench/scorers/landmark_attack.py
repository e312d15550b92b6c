"""The landmark attack (CIAGAN section 4.4): a trained attacker that sees only landmarks
(the CIAGAN drawing, or its points) identifies real test landmarks, and landmarks dlib
re-extracts from a method's outputs; an output with no landmarks is a miss, counted."""

from __future__ import annotations

from typing import Any

import numpy as np

from anonbench.api import RunContext
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Pass, Scorer
from anonbench.scorers.retrieval import _HitsTable, hits_with_misses

NOTE = "queries: landmarks re-extracted from this method's outputs"
LANDMARKER = "dlib-68"  # what the landmark attackers re-extract landmarks with


class LandmarkAttackScorer(_HitsTable, Scorer):
    """recall_at_1 of a landmark attacker (fitted at prepare on the train identities), the
    landmarks_missing count and the chance row. Its gallery is the real test images with
    landmarks; `kept` names them, so that only they are anonymized and scored."""

    name = "landmark-attack"
    specs = catalog.specs("recall_at_1", "landmarks_missing")

    def __init__(self, attacker: Any) -> None:
        self.attacker = attacker
        self.kept: list[str] | None = None  # set at prepare

    def prepare(self, real: Pass, split: Any, ctx: RunContext) -> None:
        from anonbench.scorers.attackers import embed_trained, fit_attacker

        fit_attacker(ctx, self.attacker, split.train)
        g, fell_back = embed_trained(ctx, self.attacker, real.items())
        keep = ~fell_back  # no landmarks on the real image: nothing to match against
        self.kept = [k for k, ok in zip(real.keys, keep, strict=True) if ok]
        self.gallery = g[keep]
        self.g_ids = [i for i, ok in zip(real.identities, keep, strict=True) if ok]

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        from anonbench.scorers.attackers import embed_trained

        keys, ids = out.keys, out.identities
        q, missing = embed_trained(ctx, self.attacker, out.items())
        hits = hits_with_misses(q, ids, keys, self.gallery, self.g_ids, self.kept or [], ~missing)
        self._reset()
        self._keep(self.attacker.name, keys, hits)
        self._items += [
            {"key": k, "evaluator": LANDMARKER, "landmarks_missing": int(m)}
            for k, m in zip(keys, missing, strict=True)
        ]
        n_ids = len(set(self.g_ids))
        return [
            MetricResult.from_values(
                "recall_at_1", self.attacker.name, hits, groups=ids, seed=ctx.seed, note=NOTE
            ),
            MetricResult.count("landmarks_missing", LANDMARKER, int(np.sum(missing)), len(hits)),
            MetricResult("recall_at_1", "chance", 100.0 / max(1, n_ids), n_ids),
        ]
