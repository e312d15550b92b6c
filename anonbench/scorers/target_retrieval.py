"""Target retrieval (the faceswap check): is an identity-conditioned method just pasting its
target identity? Each output, labelled with the target identity it was given, is matched
(Recall@1) against real images of the method's target identities; a face swapper scores
high, an anonymizer near chance. An output with no face generated (missed) is a miss."""

from __future__ import annotations

from typing import Any

import numpy as np

from anonbench.api import RunContext
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Needs, Pass, Scorer
from anonbench.scorers.retrieval import _HitsTable, hits_with_misses

NOTE = "label = target identity"


class TargetRetrievalScorer(_HitsTable, Scorer):
    """target_recall_at_1 per recognizer and the chance row. Prepared on the pass over the
    real images of the target identities (the gallery), scored on the output pass; `targets`:
    record key -> the target identity the method was given; `identities`: the method's
    target identities the data holds (chance = 1 / their number). `attackers` (name -> a
    trained attacker, e.g. pnca) are fitted at prepare on the split's train identities, as
    the paper's P-NCA is trained on the training set the targets come from; `embedders` are
    the fixed recognizers; `unavailable` (name -> why) gives unavailable rows."""

    name = "target-retrieval"
    specs = catalog.specs("target_recall_at_1")

    def __init__(
        self,
        embedders: list[str],
        targets: dict[str, str],
        identities: list[str],
        attackers: dict[str, Any] | None = None,
        unavailable: dict[str, str] | None = None,
    ) -> None:
        self.embedders = list(embedders)
        self.attackers = dict(attackers or {})
        self.targets = dict(targets)
        self.identities = list(identities)
        self.unavailable = dict(unavailable or {})
        self.gallery: dict[str, np.ndarray] = {}

    def needs(self) -> Needs:
        return Needs(embedders=tuple(self.embedders))

    def prepare(self, real: Pass, split: Any, ctx: RunContext) -> None:
        from anonbench.scorers.attackers import embed_trained, fit_attacker

        self.real = real
        for n, att in self.attackers.items():
            if not getattr(att, "checkpoint", None):
                fit_attacker(ctx, att, split.train)
            self.gallery[n] = embed_trained(ctx, att, real.items(), f"faceswap gallery {n}")[0]

    def _embeddings(self, name: str, out: Pass, ctx: RunContext) -> tuple[Any, Any]:
        """(queries, gallery) of one recognizer."""
        from anonbench.scorers.attackers import embed_trained

        if name in self.attackers:
            q = embed_trained(ctx, self.attackers[name], out.items(), f"{out.label} {name}")[0]
            return q, self.gallery[name]
        return out.embeddings(name)[0], self.real.embeddings(name)[0]

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        keys = out.keys
        labels = [self.targets[k] for k in keys]
        valid = np.array([not out.store.entries.get(k, {}).get("missed", True) for k in keys])
        g_ids, g_keys = self.real.identities, self.real.keys
        res = []
        self._reset()
        for e in [*self.embedders, *self.attackers]:
            q, g = self._embeddings(e, out, ctx)
            # "q:" sources: a query is never one of the gallery's real images
            hits = hits_with_misses(q, labels, [f"q:{k}" for k in keys], g, g_ids, g_keys, valid)
            self._keep(e, keys, hits)
            res.append(
                MetricResult.from_values(
                    "target_recall_at_1", e, hits, groups=labels, seed=ctx.seed, note=NOTE
                )
            )
        res += [
            MetricResult.unavailable("target_recall_at_1", n, w)
            for n, w in self.unavailable.items()
        ]
        n = len(self.identities)
        return [*res, MetricResult("target_recall_at_1", "chance", 100.0 / n, n)]
