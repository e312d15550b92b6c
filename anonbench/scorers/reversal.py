"""Reversal: any embedding scorer again, after the attacker restores every anonymized image
(Wiener or Richardson-Lucy deconvolution, anonbench.metrics.reversal); evaluator
'<evaluator>+<attack>'."""

from __future__ import annotations

import dataclasses
from typing import Any

from anonbench.api import RunContext
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Needs, Pass, Scorer


def psf_note(method: Any) -> str:
    """What the attacker knows of the blur: the method's Gaussian kernel, or nothing."""
    from anonbench.metrics.reversal import known_kernel

    kk = known_kernel(method)
    if kk:
        return f"known Gaussian PSF (kernel {kk[0]}, sigma {kk[1] or 'OpenCV default'})"
    return "Gaussian PSF width estimated per image"


class ReversalScorer(Scorer):
    """Wraps an embedding scorer (retrieval, trained retrieval, verification ...): per attack,
    the inner scorer scores a pass of restored outputs (anonbench.scorers.passes.restored_pass,
    its own per-image needs recomputed there). The inner scorer is shared with the protocol
    and prepared once; its chance and unavailable rows are not repeated."""

    def __init__(self, inner: Scorer, attacks: list[str]) -> None:
        self.inner = inner
        self.attacks = list(attacks)
        self.name = f"reversal({inner.name})"  # type: ignore[misc]
        self.specs = inner.specs  # type: ignore[misc]
        self._items: list[dict[str, Any]] = []

    def needs(self) -> Needs:
        return Needs()  # the output pass itself is not read: restored passes are built here

    def prepare(self, real: Pass, split: Any, ctx: RunContext) -> None:
        if not hasattr(self.inner, "real"):
            self.inner.prepare(real, split, ctx)

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        from anonbench.scorers.passes import restored_pass

        res: list[MetricResult] = []
        self._items = []
        if not out.records:
            return res
        for attack in self.attacks:
            restored = restored_pass(ctx, out, attack, self.inner.needs())
            note = f"reversal attack {attack} before embedding, {psf_note(out.method)}"
            for r in self.inner.score(restored, ctx):
                if r.evaluator == "chance" or (r.note or "").startswith("unavailable"):
                    continue
                n = "; ".join(x for x in (note, out.note) if x)
                if r.metric != "recall_at_1":
                    n = f"restored by {attack}"
                res.append(dataclasses.replace(r, evaluator=f"{r.evaluator}+{attack}", note=n))
            self._items += [
                {**it, "evaluator": f"{it['evaluator']}+{attack}"} for it in self.inner.per_item()
            ]
        return res

    def per_item(self) -> list[dict[str, Any]]:
        return list(self._items)
