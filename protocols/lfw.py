"""LFW verification with the second image of each pair anonymized (CIAGAN Table 3, after
Gafni et al.).

Both images are embedded by the chosen recognizer (the attacker); score = cosine similarity of
L2-normalised embeddings. For each fold, the threshold with FAR <= 0.001 on the other folds'
mismatched pairs is applied to the held-out fold (TAR@FAR=0.001), and the accuracy-maximising
threshold likewise (10-fold accuracy); AUC and EER over all pairs. A face the anonymizer misses
leaves the image unchanged and the pair stays in the metric: a missed face is a leak.

The recognizer embeds, in each image, the face its own detector finds over the reference face
(the face detected on the image's own original); where it finds none it embeds that box.

A composition of scorers (anonbench.scorers): verification and face kept, prepared once per
run on the pass over the first images (the references) and scored on each method's pass over
its second images; reversal attacks score the verification again on restored images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anonbench.api import Anonymizer, Option, Protocol, RunContext
from anonbench.data.records import ImageRecord
from anonbench.log import note, warn
from anonbench.metrics import catalog
from anonbench.metrics.result import MetricResult
from anonbench.scorers.base import ImageAnalysis, Needs, Pass
from anonbench.scorers.face_kept import FaceKeptScorer
from anonbench.scorers.verification import IN_SAMPLE, VerificationPair, VerificationScorer

FAR = 1e-3


def _check_reversal(value: str) -> None:
    """A wrong `reversal` is refused with the other options, before any work."""
    from anonbench.metrics.reversal import parse_reversal

    parse_reversal(value)


class LFWVerification(Protocol):
    """LFW verification, second image anonymized: TAR@FAR=0.001 and accuracy over the folds
    (10 on View 2), AUC and EER."""

    name = "lfw"
    version = "2"
    datasets = ("lfw",)
    metrics = catalog.specs(
        "tar_far_1e-3",
        "accuracy",
        "auc",
        "eer",
        "face_kept",
        "faces_missed",
        "embedder_no_face",
        "unreadable_images",
    )
    options = (
        Option("pairs", str, "pairs.txt", "pairs file in the data root (View 2: pairs.txt)"),
        Option("folds", int, 0, "use only the first K folds (0 = all; quick checks)"),
        Option(
            "reversal",
            str,
            "none",
            "reversal attacks restoring each anonymized image before embedding: none, wiener, "
            "richardson-lucy or all (extra rows, evaluator '<recognizer>+<attack>')",
            check=_check_reversal,
        ),
    )

    def __init__(self) -> None:
        self._real: Pass | None = None  # the references' pass, built at the first evaluate
        self._doubt = ""  # a note on every verification row (boxes of doubtful basis)

    def _pairs(self, ctx: RunContext) -> list[Any]:
        folds = int(ctx.options.get("folds") or 0)
        return [p for p in ctx.data.pairs if folds <= 0 or p.fold < folds]

    def _keys(self, ctx: RunContext) -> tuple[list[Any], list[ImageRecord], list[ImageRecord]]:
        from anonbench.data.datasets import lfw_key

        pairs = self._pairs(ctx)
        by_key = ctx.data.by_key()
        firsts = sorted({lfw_key(p.name1, p.num1) for p in pairs})
        seconds = sorted({lfw_key(p.name2, p.num2) for p in pairs})
        return pairs, [by_key[k] for k in firsts], [by_key[k] for k in seconds]

    def prepare(self, ctx: RunContext) -> None:
        from anonbench.metrics.reversal import parse_reversal

        parse_reversal(ctx.options.get("reversal"))  # a wrong value fails before any work
        pairs, firsts, seconds = self._keys(ctx)
        _refuse_trained_people(ctx, pairs)
        unique = sorted({*firsts, *seconds}, key=lambda r: r.key)
        if not ctx.quiet:
            # the counts the progress bars and the table show, said once so they add up
            print(
                f"{ctx.data.label}: {len(pairs)} pairs; {len(firsts)} distinct first images "
                f"(references), {len(seconds)} distinct second images (anonymized), "
                f"{len(unique)} distinct in all"
            )
        ctx.originals.analyze(unique, f"analyse {ctx.data.label} (distinct images)")

    def records(self, method: Anonymizer, ctx: RunContext) -> list[ImageRecord]:
        return self._keys(ctx)[2]

    def _scorers(self, ctx: RunContext) -> tuple[VerificationScorer, FaceKeptScorer]:
        """Fresh scorers of this run, prepared on the references' pass (built once)."""
        from anonbench.data.datasets import lfw_key

        pairs = [
            VerificationPair(
                lfw_key(p.name1, p.num1), lfw_key(p.name2, p.num2), p.fold, p.index, p.label
            )
            for p in self._pairs(ctx)
        ]
        scorers = (VerificationScorer(ctx.embedder, pairs, FAR), FaceKeptScorer(ctx.embedder))
        if self._real is None:
            self._real = self._references(ctx)
        for s in scorers:
            s.prepare(self._real, None, ctx)
        return scorers

    def _references(self, ctx: RunContext) -> Pass:
        """The pass over the first images, with the reference boxes frozen; sets the doubt
        (most originals without a face, or most references without one for the recognizer)."""
        from anonbench.evaluate import warn_fallback
        from anonbench.scorers.passes import frozen_boxes, real_pass

        _, firsts, seconds = self._keys(ctx)
        boxes = frozen_boxes(ctx, [*firsts, *seconds])
        needs = Needs(embedders=(ctx.embedder,))
        real = real_pass(ctx, firsts, needs, boxes, f"lfw first images ({ctx.data.label})")
        no_face = sum(boxes[r.key][1] for r in [*firsts, *seconds] if r.key in boxes)
        doubts = [warn_fallback(ctx.quiet, ctx.data.label, no_face, len(firsts) + len(seconds))]
        _, fell_back = real.embeddings(ctx.embedder)
        if len(fell_back) and fell_back.sum() / len(fell_back) > 0.5:
            k, n = int(fell_back.sum()), len(fell_back)
            msg = f"{ctx.embedder} found no face in {k}/{n} reference images"
            warn(f"{msg}: its scores rest on reference boxes", stdout=True)
            doubts.append(msg)
        self._doubt = "; ".join(x for x in doubts if x)
        return real

    def evaluate(self, method: Anonymizer, store: Any, ctx: RunContext) -> list[dict[str, Any]]:
        from anonbench.scores import score_file

        pairs, firsts, seconds = self._keys(ctx)
        verification, face_kept = self._scorers(ctx)
        real = self._real
        assert real is not None
        desc = f"lfw {method.name}: second images ({ctx.data.label})"
        out = self._store_pass(ctx, method, store, seconds, desc)
        errors = self._errors(ctx, [*firsts, *seconds], real, out)
        results = [*verification.score(out, ctx), *face_kept.score(out, ctx)]
        for r in results:
            if r.metric == "tar_far_1e-3" and "cannot be computed" in (r.note or ""):
                warn(f"{method.name}: TAR and accuracy {r.note}", stdout=True)
            elif r.metric == "tar_far_1e-3" and (r.note or "").startswith(IN_SAMPLE):
                note(f"{method.name}: {IN_SAMPLE}")
        sfile = score_file(ctx.out_dir, "lfw", method.name)
        sfile.parent.mkdir(parents=True, exist_ok=True)
        import pandas as pd

        scores = pd.DataFrame(verification.scores, columns=["fold", "pair", "label", "score"])
        scores = scores.astype({"fold": int, "pair": int, "label": int})
        scores.to_csv(sfile, index=False, float_format="%.6f")
        results += self._store_results(ctx, method, store, out)
        results.append(self._unreadable(store, firsts, seconds, errors))
        results += self._reversal(ctx, verification, out)
        base = self._base(ctx)
        ctx.extra.setdefault("lfw", {}).update(
            {
                "pairs": len(pairs),
                **ctx.originals.describe(sorted({*firsts, *seconds}, key=lambda r: r.key)),
            }
        )
        return [{**base, **r.to_row()} for r in results]

    @staticmethod
    def _unreadable(
        store: Any, firsts: list[ImageRecord], seconds: list[ImageRecord], errors: dict[str, str]
    ) -> MetricResult:
        """The count of unreadable images: originals and outputs left out, and a `folder:`
        method's outputs that do not decode (scored as their originals, leaks; not 0)."""
        entries = store.entries if store is not None else {}
        bad = {r.key for r in seconds if entries.get(r.key, {}).get("undecodable")}
        why = f"{len(bad)} undecodable output(s) scored as the originals (leaks)" if bad else None
        k = len(set(errors) | bad)
        return MetricResult.count("unreadable_images", "-", k, len(firsts) + len(seconds), why)

    def _base(self, ctx: RunContext) -> dict[str, Any]:
        """The dataset and split columns of every row (View 2 for pairs.txt)."""
        pf = ctx.data.pairs_file
        split = "view2" if pf is not None and pf.name == "pairs.txt" else Path(str(pf)).stem
        return {"dataset": ctx.data.label, "split": split}

    def _store_pass(
        self, ctx: RunContext, method: Anonymizer, store: Any, records: list[ImageRecord], desc: str
    ) -> Pass:
        """The pass over the method's outputs of `records` (those with a reference box)."""
        from anonbench.evaluate import evaluate_images, run_kwargs

        real = self._real
        assert real is not None
        recs = [r for r in records if r.key in real.boxes]
        refs = {r.key: store.ref(r) for r in recs}
        items = [(r.key, refs[r.key], real.box(r.key)) for r in recs]
        res = evaluate_images(items, [], [ctx.embedder], desc=desc, **run_kwargs(ctx))
        images = {k: ImageAnalysis.from_dict(v) for k, v in res.items()}
        ok = [r for r in recs if not images[r.key].error]
        return Pass(
            method.name,
            ok,
            images,
            real.boxes,
            None,
            refs,
            method=method,
            store=store,
            note=self._doubt,
        )

    @staticmethod
    def _errors(ctx: RunContext, records: list[ImageRecord], *passes: Pass) -> dict[str, str]:
        """key -> why, of every image left out (unreadable original or output), warned once."""
        errors = ctx.originals.errors(records)
        for p in passes:
            for k, a in p.images.items():
                if a.error and k not in errors:
                    errors[k] = a.error
        for e in sorted(set(errors.values())):
            warn(f"{e} (its pairs are left out)", stdout=True)
        return errors

    @staticmethod
    def _store_results(
        ctx: RunContext, method: Anonymizer, store: Any, out: Pass
    ) -> list[MetricResult]:
        """Examples and missed faces saved; faces_missed by the anonymizer's own detector."""
        from anonbench.examples import pick_examples, save_examples, save_missed

        ok = out.records
        chosen = set(pick_examples([(r.key, r.identity) for r in ok]))
        save_examples(
            ctx.out_dir,
            "lfw",
            method.name,
            [(r.key, r.identity, store.load(r)) for r in ok if r.key in chosen],
        )
        missed = store.missed(ok)
        save_missed(ctx.out_dir, "lfw", method.name, missed)
        # one column for every method: for a folder, a missing output file is a miss
        why = "missing output files count as missed" if store.external else None
        analysis = ctx.resources.analysis_detector  # the detector that chose the faces
        return [MetricResult.count("faces_missed", analysis, len(missed), len(ok), why)]

    @staticmethod
    def _reversal(
        ctx: RunContext, verification: VerificationScorer, out: Pass
    ) -> list[MetricResult]:
        """The verification again when the attacker restores each anonymized image first
        (anonbench.scorers.passes.restored_pass): evaluator '<recognizer>+<attack>', with the
        count of restored images where the recognizer found no face."""
        from anonbench.metrics.reversal import parse_reversal
        from anonbench.scorers.passes import restored_pass
        from anonbench.scorers.reversal import psf_note

        res: list[MetricResult] = []
        for attack in parse_reversal(ctx.options.get("reversal")):
            rp = restored_pass(ctx, out, attack, verification.needs())
            rp.note = out.note
            ev = f"{ctx.embedder}+{attack}"
            v = VerificationScorer(ctx.embedder, verification.pairs, FAR, evaluator=ev)
            v.prepare(verification.real, None, ctx)
            v.probe_note = f"reversal attack {attack} before embedding, {psf_note(out.method)}"
            res += v.score(rp, ctx)
            _, fell_back = rp.embeddings(ctx.embedder)
            k, n = int(fell_back.sum()), len(fell_back)
            res.append(MetricResult.count("embedder_no_face", ev, k, n, f"restored by {attack}"))
        return res


def _refuse_trained_people(ctx: RunContext, pairs: list[Any]) -> None:
    """A trained recognizer with a fixed checkpoint names who it was trained on (`classes`);
    one trained on people of these pairs (pnca-face v2 learned LFW) would verify them too
    well. Checked before any work; only such recognizers are built for it."""
    from anonbench.evaluate import create_evaluator
    from anonbench.registry import EMBEDDERS
    from anonbench.scorers.attackers import is_trained, refuse_seen_identities

    if not is_trained(EMBEDDERS.entry(ctx.embedder).factory):
        return
    # built once more than the scorers do (~2 s for pnca-face), so that the refusal comes
    # before any work; untrained recognizers (the default dlib-resnet) are not built here
    emb = create_evaluator(EMBEDDERS, ctx.embedder, ctx.device, ctx.batch_size)
    people = {p.name1 for p in pairs} | {p.name2 for p in pairs}
    what = f"of the {len(people)} people in these pairs"
    refuse_seen_identities(emb, people, what, "choose another --embedder")
