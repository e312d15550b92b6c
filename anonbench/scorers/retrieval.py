"""Retrieval (identity Recall@1): anonymized query against the real test gallery, per
recognizer. Fixed recognizers are read from the passes; trained attackers with a fixed
checkpoint (training "real": fitted here on the train identities or loaded) embed through
anonbench.scorers.attackers."""

from __future__ import annotations

from typing import Any

import numpy as np

from anonbench.api import RunContext
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Needs, Pass, Scorer


def recall_at_1(
    evaluator: str,
    q: np.ndarray,
    g: np.ndarray,
    ids: list[str],
    keys: list[str],
    seed: int,
    note: str = "",
) -> tuple[MetricResult, np.ndarray]:
    """Recall@1 (percent) of queries q against gallery g (row i of both: image keys[i] of
    identity ids[i]; a query's own source is left out of its gallery), with the identity
    bootstrap; also the per-query hits (0 or 100)."""
    from anonbench.metrics.retrieval import nearest_neighbour_hits

    hits = nearest_neighbour_hits(q, ids, keys, g, ids, keys).astype(np.float64) * 100
    r = MetricResult.from_values("recall_at_1", evaluator, hits, groups=ids, seed=seed, note=note)
    return r, hits


def hits_with_misses(
    q: np.ndarray,
    q_ids: list[str],
    q_src: list[str],
    g: np.ndarray,
    g_ids: list[str],
    g_keys: list[str],
    valid: np.ndarray,
) -> np.ndarray:
    """Per-query Recall@1 hits (0 or 100) where a query may be a miss: valid=False (no
    landmarks, no face generated) counts 0, as does every query against an empty gallery;
    a query's own source (q_src) is left out of its gallery."""
    from anonbench.metrics.retrieval import nearest_neighbour_hits

    hits = np.zeros(len(q_ids))
    if valid.any() and len(g):
        idx = np.flatnonzero(valid)
        hits[idx] = nearest_neighbour_hits(
            q[idx], [q_ids[i] for i in idx], [q_src[i] for i in idx], g, g_ids, g_keys
        )
    return hits * 100


def chance(ids: list[str]) -> MetricResult:
    """Recall@1 of a random guess: 100 / number of test identities."""
    n = len(set(ids))
    return MetricResult(
        "recall_at_1", "chance", 100.0 / max(1, n), n, note="1 / number of test identities"
    )


def attacker_fell_back(evaluator: str, what: str, no_face: int, n: int, kind: str) -> str:
    """A warning (and row note) when a recognizer found no face in most images: its numbers
    then rest on reference boxes, a doubtful basis."""
    if n and no_face / n > 0.5:
        msg = f"{evaluator} found no face in {no_face}/{n} {kind} images of {what}"
        if kind == "real":
            print(f"warning: {msg}: its Recall@1 rests on reference boxes")
        return msg
    return ""


def _join(*notes: str) -> str:
    return "; ".join(x for x in notes if x)


class _HitsTable:
    """Per-query hits of the last score call, for per_item."""

    def _reset(self) -> None:
        self._items: list[dict[str, Any]] = []

    def _keep(self, evaluator: str, keys: list[str], hits: np.ndarray) -> None:
        self._items += [
            {"key": k, "evaluator": evaluator, "recall_at_1": float(h)}
            for k, h in zip(keys, hits, strict=True)
        ]

    def per_item(self) -> list[dict[str, Any]]:
        return list(getattr(self, "_items", []))


class RetrievalScorer(_HitsTable, Scorer):
    """recall_at_1 and embedder_no_face per fixed recognizer (embeddings from the passes),
    the chance row, and unavailable rows for recognizers that cannot run."""

    name = "retrieval"
    specs = catalog.specs("recall_at_1", "embedder_no_face")

    def __init__(
        self, embedders: list[str], unavailable: dict[str, str] | None = None, chance: bool = True
    ) -> None:
        self.embedders = list(embedders)
        self.unavailable = dict(unavailable or {})
        self.with_chance = chance

    def needs(self) -> Needs:
        return Needs(embedders=tuple(self.embedders))

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        keys, ids = out.keys, out.identities
        res: list[MetricResult] = []
        self._reset()
        for e in self.embedders if keys else ():
            q, fb = out.embeddings(e)
            g, gfb = self.real.embeddings(e, keys)
            no_face = int(fb.sum())
            fell = attacker_fell_back(e, out.label, no_face, len(keys), "anonymized")
            fell_real = attacker_fell_back(e, "the originals", int(gfb.sum()), len(keys), "real")
            r, hits = recall_at_1(e, q, g, ids, keys, ctx.seed, _join(fell_real, fell, out.note))
            self._keep(e, keys, hits)
            res += [r, MetricResult.count("embedder_no_face", e, no_face, len(keys))]
        res += [MetricResult.unavailable("recall_at_1", n, w) for n, w in self.unavailable.items()]
        return res + ([chance(ids)] if self.with_chance else [])


class TrainedRetrievalScorer(_HitsTable, Scorer):
    """recall_at_1 of trained attackers with a fixed checkpoint (training "real"): fitted on
    the train identities at prepare (or loaded: `checkpoint`, refused when it was trained on
    test identities), gallery embedded once on the real pass."""

    name = "trained-retrieval"
    specs = catalog.specs("recall_at_1")

    def __init__(self, attackers: dict[str, Any]) -> None:
        self.attackers = dict(attackers)
        self.gallery: dict[str, dict[str, np.ndarray]] = {}

    def prepare(self, real: Pass, split: Any, ctx: RunContext) -> None:
        from anonbench.scorers.attackers import embed_trained, fit_attacker, refuse_seen_identities

        self.real = real
        for n, att in self.attackers.items():
            if getattr(att, "checkpoint", None):
                what = "test identities of this split"
                remedy = (
                    "score with the split it was trained for (its data, --seed and "
                    "test_fraction) or with a recognizer trained here (pnca)"
                )
                refuse_seen_identities(att, split.test_ids, what, remedy)
            else:
                fit_attacker(ctx, att, split.train)
            g = embed_trained(ctx, att, real.items())[0]
            self.gallery[n] = dict(zip(real.keys, g, strict=True))

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        from anonbench.scorers.attackers import embed_trained

        keys, ids = out.keys, out.identities
        res = []
        self._reset()
        for n, att in self.attackers.items():
            q = embed_trained(ctx, att, out.items(), f"{out.label} {n}")[0]
            g = np.stack([self.gallery[n][k] for k in keys]) if keys else q
            r, hits = recall_at_1(n, q, g, ids, keys, ctx.seed, out.note)
            self._keep(n, keys, hits)
            res.append(r)
        return res
