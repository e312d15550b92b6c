"""The adaptive attack: a trained attacker refitted per method on real train images plus the
method's own outputs of them, then Recall@1 as in retrieval (gallery and queries embedded by
that refitted attacker)."""

from __future__ import annotations

from typing import Any

from anonbench.api import RunContext
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Pass, Scorer
from anonbench.scorers.retrieval import _HitsTable, recall_at_1

NOTE = "trained on real + this method's anonymized train identities"


class AdaptiveAttackScorer(_HitsTable, Scorer):
    """recall_at_1 of each adaptive attacker (training "real+anonymized"; registry names):
    the method must also anonymize the train identities (see `needs_train`)."""

    name = "adaptive"
    specs = catalog.specs("recall_at_1")

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)

    @property
    def needs_train(self) -> bool:
        """True when there is an attacker to refit: the protocol then adds the train records
        to what each method produces (with none, producing them would be wasted work)."""
        return bool(self.names)

    def prepare(self, real: Pass, split: Any, ctx: RunContext) -> None:
        self.real, self.split = real, split

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        from anonbench.scorers.attackers import embed_trained, fit_attacker, trained_attacker

        org = ctx.originals
        keys, ids = out.keys, out.identities
        res = []
        self._reset()
        for n in self.names:
            train = org.readable(self.split.train)
            extra = [(r.key, out.store.ref(r), org.reference(r.key)[0], r.identity) for r in train]
            fresh = trained_attacker(n, ctx)
            fit_attacker(ctx, fresh, self.split.train, extra)
            q = embed_trained(ctx, fresh, out.items())[0]
            g = embed_trained(ctx, fresh, self.real.items(keys))[0]
            note = "; ".join(x for x in (NOTE, out.note) if x)
            r, hits = recall_at_1(n, q, g, ids, keys, ctx.seed, note)
            self._keep(n, keys, hits)
            res.append(r)
        return res
