"""Realism: FID and KID of the outputs against the real test images, on one set of shared
Inception-v3 pool3 features per image set (the pass's "inception" features), never extracted
twice."""

from __future__ import annotations

import math
import warnings
from typing import Any

from anonbench.api import RunContext
from anonbench.errors import AnonbenchError
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Needs, Pass, Scorer

EVALUATOR = "inception-v3"


class RealismScorer(Scorer):
    """fid and (kid=True) kid, anonymized vs real images of the scored records; unavailable
    rows when the Inception weights cannot be loaded."""

    name = "realism"
    specs = catalog.specs("fid", "kid")

    def __init__(self, kid: bool = True) -> None:
        self.metrics = ["fid", *(["kid"] if kid else [])]

    def needs(self) -> Needs:
        return Needs(features=("inception",))

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        keys = out.keys
        try:
            real = self.real.features["inception"].compute(keys)
            fake = out.features["inception"].compute(keys)
        except AnonbenchError as e:
            return [MetricResult.unavailable(m, EVALUATOR, str(e)) for m in self.metrics]
        source = out.features["inception"].source
        res = [self._fid(fake, real, source)]
        if "kid" in self.metrics:
            res.append(self._kid(fake, real, source, ctx.seed))
        return res

    @staticmethod
    def _fid(fake: Any, real: Any, source: str) -> MetricResult:
        from anonbench.metrics.fid import fid_from_features

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fid_from_features(fake, real, weights_source=source)
        return MetricResult(
            "fid", EVALUATOR, r.fid, r.n1, note="; ".join([r.weights_source, *r.warnings])
        )

    @staticmethod
    def _kid(fake: Any, real: Any, source: str, seed: int) -> MetricResult:
        from anonbench.metrics.kid import kid_from_features

        if min(len(fake), len(real)) < 2:
            return MetricResult(
                "kid", EVALUATOR, math.nan, len(fake), note="KID needs at least 2 images per set"
            )
        k = kid_from_features(fake, real, seed=seed)
        notes = [source, f"{k.subsets} subsets of {k.subset_size}, seed {seed}", *k.notes]
        return MetricResult("kid", EVALUATOR, k.kid, k.n1, std=k.std, note="; ".join(notes))
