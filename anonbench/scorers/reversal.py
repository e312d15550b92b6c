"""Reversal: any embedding scorer again, after the attacker restores every anonymized image
(Wiener or Richardson-Lucy deconvolution, anonbench.metrics.reversal, or `learned`: a
restoration network trained per method on the method's own outputs of the train identities,
anonbench.faces.restoration); evaluator '<evaluator>+<attack>'."""

from __future__ import annotations

import dataclasses
from typing import Any

from anonbench.api import RunContext
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import Needs, Pass, Scorer


def psf_note(method: Any, attack: str = "") -> str:
    """What the attacker knows of the blur: the method's Gaussian kernel, or nothing."""
    from anonbench.metrics.reversal import LEARNED, known_kernel

    if attack == LEARNED:
        return "restoration network trained on this method's outputs of the train identities"
    kk = known_kernel(method)
    if kk:
        return f"known Gaussian PSF (kernel {kk[0]}, sigma {kk[1] or 'OpenCV default'})"
    return "Gaussian PSF width estimated per image"


class ReversalScorer(Scorer):
    """Wraps an embedding scorer (retrieval, trained retrieval, verification ...): per attack,
    the inner scorer scores a pass of restored outputs (anonbench.scorers.passes.restored_pass,
    its own per-image needs recomputed there). The inner scorer is shared with the protocol
    and prepared once; its chance and unavailable rows are not repeated."""

    def __init__(
        self, inner: Scorer, attacks: list[str], learned: LearnedReversal | None = None
    ) -> None:
        from anonbench.metrics.reversal import LEARNED

        self.inner = inner
        self.attacks = list(attacks)
        if LEARNED in self.attacks and learned is None:
            raise ValueError("reversal 'learned' needs a LearnedReversal")
        self.learned = learned
        # the protocol then adds the train records to what each method produces
        self.needs_train = learned is not None and LEARNED in self.attacks
        self.name = f"reversal({inner.name})"  # type: ignore[misc]
        self.specs = inner.specs  # type: ignore[misc]
        self._items: list[dict[str, Any]] = []

    def needs(self) -> Needs:
        return Needs()  # the output pass itself is not read: restored passes are built here

    def prepare(self, real: Pass, split: Any, ctx: RunContext) -> None:
        if not hasattr(self.inner, "real"):
            self.inner.prepare(real, split, ctx)
        if self.learned is not None:
            self.learned.split = split

    def score(self, out: Pass, ctx: RunContext) -> list[MetricResult]:
        from anonbench.metrics.reversal import LEARNED
        from anonbench.scorers.passes import restored_pass

        res: list[MetricResult] = []
        self._items = []
        if not out.records:
            return res
        for attack in self.attacks:
            if attack == LEARNED and self.learned is not None:
                restored = self.learned.restored_pass(ctx, out, self.inner.needs())
            else:
                restored = restored_pass(ctx, out, attack, self.inner.needs())
            note = f"reversal attack {attack} before embedding, {psf_note(out.method, attack)}"
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


class LearnedReversal:
    """`reversal=learned`, shared by the protocol's reversal scorers: per method, one
    restorer (anonbench.faces.restoration) trained on (original, output) pairs of the train
    identities to a CPU budget, cached by method config + pairs + budget; its learning curve
    goes to <out>/learned_reversal/<method>.csv and run.json (ctx.extra["learned_reversal"])."""

    def __init__(self, cpu_minutes: float) -> None:
        self.cpu_minutes = float(cpu_minutes)
        self.split: Any = None  # set at prepare by the scorers
        self._files: dict[str, str] = {}  # method label -> restorer file

    def checkpoint(self, ctx: RunContext, out: Pass) -> str:
        """The restorer file for out's method, trained (or found in the cache) once."""
        if out.label in self._files:
            return self._files[out.label]
        from anonbench.faces import restoration as rs

        cfg = rs.RestoreConfig(cpu_minutes=self.cpu_minutes, seed=ctx.seed)
        anon, orig, labels = self._pairs(ctx, out, cfg)
        if not ctx.quiet:
            print(
                f"learned reversal {out.label}: {len(labels)} train pairs, "
                f"{self.cpu_minutes:g} CPU-minutes"
            )

        def show(p: dict[str, float]) -> None:
            if not ctx.quiet:
                print(f"  restorer {out.label}: " + ", ".join(f"{k} {v:g}" for k, v in p.items()))

        r = rs.cached_restorer(ctx.cache_dir, method_key(out.method), anon, orig, labels, cfg, show)
        self._record(ctx, out.label, r, len(labels))
        assert r.path is not None
        self._files[out.label] = r.path
        return r.path

    def _pairs(self, ctx: RunContext, out: Pass, cfg: Any) -> tuple[Any, Any, list[str]]:
        """(output crops, original crops, identities) of the readable train records."""
        import numpy as np

        from anonbench.errors import AnonbenchError
        from anonbench.faces.restoration import crops
        from anonbench.produce import ImageRef

        org = ctx.originals
        train = org.readable(self.split.train if self.split is not None else [])
        if len(train) < 2:
            raise AnonbenchError("reversal=learned: fewer than 2 readable train images")
        boxes = [org.reference(r.key)[0] for r in train]
        anon, orig = [], []
        for r, b in zip(train, boxes, strict=True):  # one image at a time: crops are small
            anon.append(crops([out.store.ref(r).load()], [b], cfg)[0])
            orig.append(crops([ImageRef(None, str(r.path)).load()], [b], cfg)[0])
        return np.stack(anon), np.stack(orig), [r.identity for r in train]

    def _record(self, ctx: RunContext, label: str, r: Any, n: int) -> None:
        """The learning curve as a CSV in the run's folder and in run.json."""
        import csv
        import io
        from pathlib import Path

        from anonbench.cache import atomic_write_text
        from anonbench.scores import score_file_name

        f = Path(ctx.out_dir) / "learned_reversal" / score_file_name(label)
        f.parent.mkdir(parents=True, exist_ok=True)
        cols = ["step", "cpu_minutes", "val_l1", "val_l1_unrestored"]
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(r.curve)
        atomic_write_text(f, buf.getvalue())  # never a half-written curve
        ctx.extra.setdefault("learned_reversal", {})[label] = {
            "budget_cpu_minutes": self.cpu_minutes,
            **r.info,
            "pairs": n,
            "config": dict(vars(r.cfg)),
            "restorer": Path(r.path).name if r.path else None,
            "curve_csv": str(f.relative_to(ctx.out_dir)),
            "curve": r.curve,
        }

    def restored_pass(self, ctx: RunContext, out: Pass, needs: Any) -> Pass:
        """`out` with every output restored by the method's trained restorer, evaluated with
        the per-image needs of the inner scorer (as anonbench.scorers.passes.restored_pass)."""
        from anonbench.errors import AnonbenchError
        from anonbench.metrics.reversal import LearnedRef
        from anonbench.scorers.base import ImageAnalysis
        from anonbench.scorers.passes import _analyse, _loader

        ck = self.checkpoint(ctx, out)
        refs = {}
        for k in out.keys:
            ref, box = out.refs[k], tuple(float(v) for v in out.box(k))
            refs[k] = LearnedRef(ref.path, ref.fallback, ref.like, checkpoint=ck, box=box)
        label = f"{out.label} +learned"
        if needs.detectors or needs.embedders:
            images = _analyse(ctx, [(k, refs[k], out.box(k)) for k in out.keys], needs, label)
            bad = sorted(k for k in out.keys if images[k].error)
            if bad:
                raise AnonbenchError(
                    f"reversal learned: unreadable {bad[0]}: {images[bad[0]].error}"
                )
        else:
            images = {k: ImageAnalysis() for k in out.keys}
        return Pass(
            label, out.records, images, out.boxes, _loader(refs), refs, {}, out.method, out.store
        )


def method_key(method: Any) -> str:
    """What identifies a method's outputs apart from the images: class, name, config and
    checkpoint (as the output store's key)."""
    import json

    meta = getattr(method, "meta", None)
    return json.dumps(
        {
            "class": f"{type(method).__module__}.{type(method).__qualname__}",
            "name": getattr(method, "name", ""),
            "config": method.config() if hasattr(method, "config") else {},
            "checkpoint": getattr(meta, "checkpoint_sha256", None),
        },
        sort_keys=True,
        default=str,
    )
