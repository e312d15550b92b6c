"""Verification scorer: pairs of a reference (an original, in the real pass) and a probe (a
method's output, in the output pass), scored by the cosine similarity of one recognizer's
L2-normalised embeddings.

Results: TAR at FAR <= `far` and accuracy over the folds (each fold's thresholds chosen on the
other folds; in-sample with a single fold), and AUC and EER over all pairs. `per_item` gives
the per-pair scores (fold, pair, label, score) behind them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anonbench.api import RunContext
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Needs, Pass, Scorer

IN_SAMPLE = "single fold: thresholds chosen in-sample (optimistic)"


@dataclass(frozen=True)
class VerificationPair:
    """One pair: the reference image's key (real pass), the probe's key (output pass), its
    fold, its index in the pairs file and its label (1: same identity)."""

    reference: str
    probe: str
    fold: int
    index: int
    label: int


class VerificationScorer(Scorer):
    """TAR@FAR, accuracy, AUC and EER of `embedder` over `pairs`. `evaluator` names the rows
    (default: the embedder); a pair is left out when either image failed in either pass."""

    name = "verification"
    specs = catalog.specs("tar_far_1e-3", "accuracy", "auc", "eer")

    def __init__(
        self,
        embedder: str,
        pairs: Sequence[VerificationPair],
        far: float = 1e-3,
        evaluator: str | None = None,
    ) -> None:
        self.embedder, self.pairs, self.far = embedder, list(pairs), far
        self.evaluator = evaluator or embedder
        self.scores = np.zeros((0, 4))  # the last score call's (fold, pair, label, score)
        self.probe_note = ""  # a note on every row of the last score call (e.g. the attack)

    def needs(self) -> Needs:
        return Needs(embedders=(self.embedder,))

    def pair_scores(self, out: Pass) -> np.ndarray:
        """(fold, pair, label, cosine score) of every pair with both images scored, as an
        N x 4 float array in the order of `pairs`."""
        bad = {k for p in (self.real, out) for k, a in p.images.items() if a.error}
        refs, probes = set(self.real.keys) - bad, set(out.keys) - bad
        rows = []
        for p in self.pairs:
            if p.reference in refs and p.probe in probes:
                a = self.real.images[p.reference].embs[self.embedder][0]
                b = out.images[p.probe].embs[self.embedder][0]
                rows.append((p.fold, p.index, p.label, float(np.dot(a, b))))
        return np.array(rows, np.float64).reshape(-1, 4)

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        self.scores = self.pair_scores(out)
        return [*self._fold_results(out.note), *self._roc_results(out.note)]

    def _note(self, *parts: str) -> str | None:
        return "; ".join(x for x in (self.probe_note, *parts) if x) or None

    def _fold_results(self, doubt: str) -> list[MetricResult]:
        """TAR and accuracy over the folds, NaN with the reason when they cannot be had."""
        from anonbench.metrics.verification import kfold_verification

        s, n = self.scores, len(self.scores)
        if not n:
            why = "no readable pairs"
            return [MetricResult("tar_far_1e-3", self.evaluator, math.nan, 0, note=why)]
        try:
            res = kfold_verification(s[:, 3], s[:, 2].astype(int), s[:, 0].astype(int), self.far)
        except ValueError as e:  # the folds leave no threshold (e.g. no mismatched pair)
            note = self._note(f"cannot be computed: {e}")
            return [
                MetricResult(m, self.evaluator, math.nan, n, note=note)
                for m in ("tar_far_1e-3", "accuracy")
            ]
        folds = IN_SAMPLE if res.in_sample else f"{len(res.folds)} folds"
        note = self._note(folds, doubt)
        (tm, ts), (am, as_) = res.tar_mean_std(), res.accuracy_mean_std()
        return [
            MetricResult("tar_far_1e-3", self.evaluator, tm, n, std=ts, note=note),
            MetricResult("accuracy", self.evaluator, am, n, std=as_, note=note),
        ]

    def _roc_results(self, doubt: str) -> list[MetricResult]:
        """AUC and EER over all pairs (no threshold is chosen, so no folds)."""
        from anonbench.metrics.verification import equal_error_rate, roc_auc

        s, y = self.scores[:, 3], self.scores[:, 2].astype(int)
        try:
            values = {"auc": roc_auc(s, y), "eer": equal_error_rate(s, y)}
            note = self._note(doubt)
        except ValueError as e:
            values = {"auc": math.nan, "eer": math.nan}
            note = self._note(f"cannot be computed: {e}")
        return [MetricResult(m, self.evaluator, v, len(s), note=note) for m, v in values.items()]

    def per_item(self) -> list[dict[str, Any]]:
        """One dict per scored pair: key "<reference>|<probe>", fold, pair, label, score."""
        by_index = {(p.fold, p.index): p for p in self.pairs}
        out = []
        for f, i, y, s in self.scores:
            p = by_index[(int(f), int(i))]
            out.append(
                {
                    "key": f"{p.reference}|{p.probe}",
                    "evaluator": self.evaluator,
                    "fold": int(f),
                    "pair": int(i),
                    "label": int(y),
                    "score": float(s),
                }
            )
        return out
