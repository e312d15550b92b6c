"""LFW verification with the second image of each pair anonymized (CIAGAN Table 3, after
Gafni et al.).

Both images are embedded by the chosen recognizer (the attacker); score = cosine similarity of
L2-normalised embeddings. For each fold, the threshold with FAR <= 0.001 on the other folds'
mismatched pairs is applied to the held-out fold (TAR@FAR=0.001), and the accuracy-maximising
threshold likewise (10-fold accuracy). A face the anonymizer misses leaves the image unchanged
and the pair stays in the metric: a missed face is a leak.

The recognizer embeds, in each image, the face its own detector finds over the reference face
(the face detected on the image's own original); where it finds none it embeds that box.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from anonbench.api import Anonymizer, Option, Protocol, RunContext
from anonbench.data.records import ImageRecord
from anonbench.metrics import catalog
from anonbench.registry import register_protocol

FAR = 1e-3


@register_protocol("lfw")
class LFWVerification(Protocol):
    """LFW verification, second image anonymized: TAR@FAR=0.001 and accuracy over the folds
    (10 on View 2)."""

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
        ),
    )

    def __init__(self) -> None:
        self._reference: dict[str, dict[str, Any]] = {}

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

    def evaluate(self, method: Anonymizer, store: Any, ctx: RunContext) -> list[dict[str, Any]]:
        import pandas as pd

        from anonbench.evaluate import (
            evaluate_images,
            real_items,
            run_kwargs,
            store_items,
            warn_fallback,
        )
        from anonbench.examples import pick_examples, save_examples, save_missed
        from anonbench.scores import score_file

        pairs, firsts, seconds = self._keys(ctx)
        org = ctx.originals
        kw = run_kwargs(ctx)
        todo = [r for r in firsts if r.key not in self._reference]
        if todo:
            self._reference.update(
                evaluate_images(
                    real_items(ctx, org.readable(todo)),
                    [],
                    [ctx.embedder],
                    desc=f"lfw first images ({ctx.data.label})",
                    **kw,
                )
            )
        anon = evaluate_images(
            store_items(ctx, org.readable(seconds), store),
            [],
            [ctx.embedder],
            desc=f"lfw {method.name}: second images ({ctx.data.label})",
            **kw,
        )
        errors = org.errors([*firsts, *seconds])
        for k, r in [*self._reference.items(), *anon.items()]:
            if r["error"] and k not in errors:
                errors[k] = r["error"]
        for e in sorted(set(errors.values())):
            print(f"warning: {e} (its pairs are left out)")
        rows_scores = self._scores(pairs, errors, anon, ctx.embedder)
        scores = pd.DataFrame(rows_scores, columns=["fold", "pair", "label", "score"])
        sfile = score_file(ctx.out_dir, "lfw", method.name)
        sfile.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(sfile, index=False, float_format="%.6f")

        ok = [r for r in seconds if r.key not in errors]
        chosen = set(pick_examples([(r.key, r.identity) for r in ok]))
        save_examples(
            ctx.out_dir,
            "lfw",
            method.name,
            [(r.key, r.identity, store.load(r)) for r in ok if r.key in chosen],
        )
        missed = store.missed(ok)
        save_missed(ctx.out_dir, "lfw", method.name, missed)
        no_face = sum(bool(anon[r.key]["embs"][ctx.embedder][1]) for r in ok)
        ref_fallback = sum(
            org.reference(r.key)[1] for r in [*firsts, *seconds] if r.key not in errors
        )
        doubt = warn_fallback(ctx.quiet, ctx.data.label, ref_fallback, len(firsts) + len(seconds))
        ref_ok = [r for r in firsts if r.key not in errors]
        ref_no_face = sum(bool(self._reference[r.key]["embs"][ctx.embedder][1]) for r in ref_ok)
        if ref_ok and ref_no_face / len(ref_ok) > 0.5:
            msg = f"{ctx.embedder} found no face in {ref_no_face}/{len(ref_ok)} reference images"
            print(f"warning: {msg}: its scores rest on reference boxes")
            doubt = "; ".join(x for x in (doubt, msg) if x)
        n_folds = int(scores["fold"].nunique()) if len(scores) else 0
        note = ""
        rows: list[dict[str, Any]] = []
        pf = ctx.data.pairs_file
        base = {
            "dataset": ctx.data.label,
            "split": "view2" if pf is not None and pf.name == "pairs.txt" else Path(str(pf)).stem,
            "evaluator": ctx.embedder,
        }
        res, why = (
            _kfold(
                scores["score"].to_numpy(), scores["label"].to_numpy(), scores["fold"].to_numpy()
            )
            if n_folds
            else (None, "no readable pairs")
        )
        if res is not None:
            if res.in_sample:
                note = "single fold: thresholds chosen in-sample (optimistic)"
                print(f"note: {method.name}: {note}")
            tm, ts = res.tar_mean_std()
            am, as_ = res.accuracy_mean_std()
            fold_note = "; ".join(x for x in (note or f"{n_folds} folds", doubt) if x)
            rows += [
                {
                    **base,
                    "metric": "tar_far_1e-3",
                    "value": tm,
                    "std": ts,
                    "n": len(scores),
                    "note": fold_note,
                },
                {
                    **base,
                    "metric": "accuracy",
                    "value": am,
                    "std": as_,
                    "n": len(scores),
                    "note": fold_note,
                },
            ]
        else:
            if n_folds:
                print(f"warning: {method.name}: TAR and accuracy cannot be computed: {why}")
            rows += [
                {
                    **base,
                    "metric": m,
                    "value": math.nan,
                    "n": len(scores),
                    "note": why if not n_folds else f"cannot be computed: {why}",
                }
                for m in (("tar_far_1e-3",) if not n_folds else ("tar_far_1e-3", "accuracy"))
            ]
        rows += _roc_rows(scores, base, doubt)
        from anonbench.metrics.result import MetricResult

        kept = np.array([not anon[r.key]["embs"][ctx.embedder][1] for r in ok], np.float64) * 100
        face_kept = MetricResult.from_values(
            "face_kept",
            ctx.embedder,
            kept,
            seed=ctx.seed,
            note="embedder_no_face is the count behind it",
        )
        rows.append({**base, **face_kept.to_row()})
        rows += [
            # the anonymizer's detector, not the recognizer, misses these
            {
                **base,
                "metric": "faces_missed",
                "value": len(missed),
                "n": len(ok),
                # one column for every method: for a folder, a missing output file is a miss
                "evaluator": "dlib-hog",
                "note": "missing output files count as missed" if store.external else None,
            },
            {**base, "metric": "embedder_no_face", "value": no_face, "n": len(ok)},
            {
                **base,
                "metric": "unreadable_images",
                "evaluator": "-",
                "value": len(set(errors)),
                "n": len(firsts) + len(seconds),
            },
        ]
        rows += self._reversal_rows(method, store, ctx, pairs, seconds, errors, base, doubt, kw)
        ctx.extra.setdefault("lfw", {}).update(
            {"pairs": len(pairs), **org.describe(sorted({*firsts, *seconds}, key=lambda r: r.key))}
        )
        return rows

    def _scores(
        self, pairs: list[Any], errors: dict[str, str], anon: dict[str, Any], embedder: str
    ) -> list[tuple[int, int, int, float]]:
        """(fold, pair, label, cosine score) of every pair with both images readable."""
        from anonbench.data.datasets import lfw_key

        out = []
        for p in pairs:
            k1, k2 = lfw_key(p.name1, p.num1), lfw_key(p.name2, p.num2)
            if k1 in errors or k2 in errors:
                continue
            a = self._reference[k1]["embs"][embedder][0]
            b = anon[k2]["embs"][embedder][0]
            out.append((p.fold, p.index, p.label, float(np.dot(a, b))))
        return out

    def _reversal_rows(
        self,
        method: Anonymizer,
        store: Any,
        ctx: RunContext,
        pairs: list[Any],
        seconds: list[ImageRecord],
        errors: dict[str, str],
        base: dict[str, Any],
        doubt: str,
        kw: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """TAR and accuracy when the attacker restores each anonymized image first
        (anonbench.metrics.reversal): evaluator '<recognizer>+<attack>'."""
        from anonbench.evaluate import evaluate_images
        from anonbench.metrics.reversal import known_kernel, parse_reversal, restored

        attacks = parse_reversal(ctx.options.get("reversal"))
        kk = known_kernel(method)
        psf = (
            f"known Gaussian PSF (kernel {kk[0]}, sigma {kk[1] or 'OpenCV default'})"
            if kk
            else "Gaussian PSF width estimated per image"
        )
        rows: list[dict[str, Any]] = []
        ok = [r for r in seconds if r.key not in errors]
        for attack in attacks:
            items = [
                (r.key, restored(store.ref(r), attack, method, ctx.originals.reference(r.key)[0]))
                for r in ok
            ]
            res = evaluate_images(
                [(k, ref, ctx.originals.reference(k)[0]) for k, ref in items],
                [],
                [ctx.embedder],
                desc=f"lfw {method.name} +{attack} ({ctx.data.label})",
                **kw,
            )
            errs = dict(errors)
            errs.update({k: r["error"] for k, r in res.items() if r["error"]})
            sc = np.array(self._scores(pairs, errs, res, ctx.embedder), np.float64).reshape(-1, 4)
            ev = {**base, "evaluator": f"{ctx.embedder}+{attack}"}
            if not len(sc):
                rows.append({**ev, "metric": "tar_far_1e-3", "value": math.nan, "n": 0})
                continue
            out, why = _kfold(sc[:, 3], sc[:, 2].astype(int), sc[:, 0].astype(int))
            if out is None:
                rows.append(
                    {**ev, "metric": "tar_far_1e-3", "value": math.nan, "n": len(sc), "note": why}
                )
                continue
            n_folds = len(set(sc[:, 0].tolist()))
            note = "; ".join(
                x
                for x in (
                    f"reversal attack {attack} before embedding, {psf}",
                    "single fold: thresholds chosen in-sample (optimistic)"
                    if out.in_sample
                    else f"{n_folds} folds",
                    doubt,
                )
                if x
            )
            for metric, (m, sd) in (
                ("tar_far_1e-3", out.tar_mean_std()),
                ("accuracy", out.accuracy_mean_std()),
            ):
                rows.append(
                    {**ev, "metric": metric, "value": m, "std": sd, "n": len(sc), "note": note}
                )
            kept = [k for k, _ in items if k not in errs]
            rows.append(
                {
                    **ev,
                    "metric": "embedder_no_face",
                    "value": sum(bool(res[k]["embs"][ctx.embedder][1]) for k in kept),
                    "n": len(kept),
                    "note": f"restored by {attack}",
                }
            )
        return rows


def _kfold(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[Any, str]:
    """k-fold verification, or (None, why) when the folds leave no threshold to choose (e.g.
    an unreadable image took a fold's last mismatched pair)."""
    from anonbench.metrics.verification import kfold_verification

    try:
        return kfold_verification(scores, labels, folds, far=FAR), ""
    except ValueError as e:
        return None, str(e)


def _roc_rows(scores: Any, base: dict[str, Any], doubt: str) -> list[dict[str, Any]]:
    """AUC and EER over all scored pairs (no threshold is chosen, so no folds): NaN with the
    reason when the pairs lack a class."""
    from anonbench.metrics.verification import equal_error_rate, roc_auc

    s, y = scores["score"].to_numpy(), scores["label"].to_numpy()
    try:
        values = {"auc": roc_auc(s, y), "eer": equal_error_rate(s, y)}
        note = doubt or None
    except ValueError as e:
        values, note = {"auc": math.nan, "eer": math.nan}, f"cannot be computed: {e}"
    return [{**base, "metric": m, "value": v, "n": len(s), "note": note} for m, v in values.items()]
