"""LFW verification with the second image of each pair anonymized (CIAGAN Table 3, after
Gafni et al.).

Both images are embedded by the chosen recognizer (the attacker); score = cosine similarity of
L2-normalised embeddings. For each fold, the threshold with FAR <= 0.001 on the other folds'
mismatched pairs is applied to the held-out fold (TAR@FAR=0.001), and the accuracy-maximising
threshold likewise (10-fold accuracy). A face the anonymizer misses leaves the image unchanged
and the pair stays in the metric: a missed face is a leak.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anonbench.api import Anonymizer, MetricSpec, Protocol, RunContext
from anonbench.cache import Cache
from anonbench.data.lfw import LFW_FACE_BOX, Pair, open_lfw
from anonbench.faces.cached import cached_embedding
from anonbench.registry import register_protocol

FAR = 1e-3


@dataclass
class _Worker:
    method: Anonymizer | None  # None: embed the image as it is (the reference image)
    embedder: Any
    analyzer: Any
    cache: Cache
    method_key: str


def _build_worker(
    method: Anonymizer | None, embedder_name: str, cache_dir: str, method_key: str
) -> _Worker:
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.registry import EMBEDDERS

    cache = Cache(cache_dir)
    analyzer = FaceAnalyzer(cache=cache) if method is not None else None
    return _Worker(method, EMBEDDERS.create(embedder_name), analyzer, cache, method_key)


def _process(w: _Worker, item: tuple[str, str]) -> dict[str, Any]:
    """Reads one image, anonymizes it (if a method is set) and embeds it."""
    from anonbench.anonymize import load_anonymized
    from anonbench.data.images import ImageReadError

    key, path = item
    try:
        img, faces = load_anonymized(w.method, w.analyzer, path, key)
    except ImageReadError as e:
        return {"key": key, "error": str(e)}
    emb, fb = cached_embedding(w.cache, w.embedder, img, LFW_FACE_BOX)
    return {"key": key, "embedding": emb, "fallback": fb, "faces": faces, "error": None}


@register_protocol("lfw")
class LFWVerification(Protocol):
    """LFW verification, second image anonymized: TAR@FAR=0.001 and accuracy over 10 folds."""

    name = "lfw"
    version = "1"
    datasets = ("lfw",)
    metrics = (
        MetricSpec(
            "tar_far_1e-3",
            False,
            "true accept rate at FAR <= 0.001 (mean over folds); lower = better anonymization",
        ),
        MetricSpec("accuracy", False, "10-fold verification accuracy; 0.5 = chance"),
        MetricSpec(
            "faces_missed",
            None,
            "anonymized images in which the anonymizer's detector "
            "found no face (returned unchanged, kept in the metric)",
        ),
        MetricSpec(
            "embedder_no_face",
            None,
            "anonymized images in which the recognizer found no "
            "face and embedded the fixed LFW face box",
        ),
        MetricSpec(
            "unreadable_images", None, "images that could not be read; their pairs are left out"
        ),
    )

    def __init__(self, pairs_file: str = "pairs.txt") -> None:
        self.pairs_file = pairs_file
        self._reference: dict[str, dict[str, Any]] = {}

    def _embed_all(
        self,
        method: Anonymizer | None,
        items: list[tuple[str, str]],
        ctx: RunContext,
        desc: str,
        method_key: str,
    ) -> dict[str, dict[str, Any]]:
        from tqdm.auto import tqdm

        from anonbench.parallel import map_items

        builder = functools.partial(_build_worker, method, ctx.embedder, ctx.cache_dir, method_key)
        results = {}
        it = map_items(_process, builder, items, workers=ctx.workers)
        for r in tqdm(
            it,
            total=len(items),
            desc=desc,
            unit="img",
            dynamic_ncols=True,
            disable=ctx.options.get("quiet", False),
        ):
            results[r["key"]] = r
        return results

    def _save_examples(
        self, method: Anonymizer, items: list[tuple[str, str]], ctx: RunContext
    ) -> None:
        """The same few anonymized faces for every method, for the report's image grid."""
        from anonbench.anonymize import anonymize_image
        from anonbench.data.images import read_rgb
        from anonbench.examples import pick_examples, save_examples
        from anonbench.faces.analysis import FaceAnalyzer

        paths = dict(items)
        chosen = pick_examples([(k, k.split("/")[0]) for k in paths])
        analyzer = FaceAnalyzer(cache=Cache(ctx.cache_dir))
        out = []
        for k in chosen:
            img = read_rgb(paths[k])
            out.append((k, k.split("/")[0], anonymize_image(method, img, analyzer(img), k)))
        save_examples(ctx.out_dir, "lfw", method.name, out)

    def run(self, method: Anonymizer, ctx: RunContext) -> list[dict[str, Any]]:
        import pandas as pd

        ds = open_lfw(ctx.data_root, ctx.options.get("pairs", self.pairs_file))
        pairs: list[Pair] = ds.pairs()
        if ctx.limit_folds is not None:
            pairs = [p for p in pairs if p.fold < ctx.limit_folds]
        k1 = {p: f"{p.name1}/{p.num1}" for p in pairs}
        k2 = {p: f"{p.name2}/{p.num2}" for p in pairs}
        firsts = sorted({(k1[p], str(ds.image_path(p.name1, p.num1))) for p in pairs})
        seconds = sorted({(k2[p], str(ds.image_path(p.name2, p.num2))) for p in pairs})

        # reference images: embedded once per protocol instance (and cached on disk)
        todo = [it for it in firsts if it[0] not in self._reference]
        if todo:
            self._reference.update(
                self._embed_all(None, todo, ctx, f"lfw reference ({ds.label})", "reference")
            )
        anon = self._embed_all(method, seconds, ctx, f"lfw {method.name} ({ds.label})", method.name)

        errors = sorted(
            {r["error"] for r in [*self._reference.values(), *anon.values()] if r["error"]}
        )
        for e in errors:
            print(f"warning: {e} (its pairs are left out)")
        rows_scores = []
        for p in pairs:
            a, b = self._reference[k1[p]], anon[k2[p]]
            if a["error"] or b["error"]:
                continue
            score = float(np.dot(a["embedding"], b["embedding"]))
            rows_scores.append((p.fold, p.index, p.label, score))
        scores = pd.DataFrame(rows_scores, columns=["fold", "pair", "label", "score"])
        sdir = Path(ctx.out_dir) / "scores" / "lfw"
        sdir.mkdir(parents=True, exist_ok=True)
        scores.to_csv(sdir / f"{method.name}.csv", index=False, float_format="%.6f")

        self._save_examples(
            method, [(k, p) for k, p in seconds if k in anon and not anon[k]["error"]], ctx
        )

        from anonbench.examples import save_missed
        from anonbench.metrics.verification import kfold_verification

        ok = [r for r in anon.values() if not r["error"]]
        missed = sum(r["faces"] == 0 for r in ok)
        save_missed(ctx.out_dir, "lfw", method.name, [r["key"] for r in ok if r["faces"] == 0])
        no_face = sum(bool(r["fallback"]) for r in ok)
        n_folds = int(scores["fold"].nunique()) if len(scores) else 0
        note = ""
        rows: list[dict[str, Any]] = []
        base = {
            "dataset": ds.label,
            "split": "view2" if "pairs.txt" in ds.pairs_file.name else ds.pairs_file.stem,
            "evaluator": ctx.embedder,
        }
        if n_folds:
            res = kfold_verification(
                scores["score"].to_numpy(),
                scores["label"].to_numpy(),
                scores["fold"].to_numpy(),
                far=FAR,
            )
            if res.in_sample:
                note = "single fold: thresholds chosen in-sample (optimistic)"
                print(f"note: {method.name}: {note}")
            tm, ts = res.tar_mean_std()
            am, as_ = res.accuracy_mean_std()
            rows += [
                {
                    **base,
                    "metric": "tar_far_1e-3",
                    "value": tm,
                    "std": ts,
                    "n": len(scores),
                    "note": note or f"{n_folds} folds",
                },
                {
                    **base,
                    "metric": "accuracy",
                    "value": am,
                    "std": as_,
                    "n": len(scores),
                    "note": note or f"{n_folds} folds",
                },
            ]
        else:
            rows.append(
                {
                    **base,
                    "metric": "tar_far_1e-3",
                    "value": math.nan,
                    "n": 0,
                    "note": "no readable pairs",
                }
            )
        rows += [
            # the anonymizer's detector, not the recognizer, misses these
            {
                **base,
                "metric": "faces_missed",
                "value": missed,
                "n": len(ok),
                "evaluator": "dlib-hog",
            },
            {**base, "metric": "embedder_no_face", "value": no_face, "n": len(ok)},
            {
                **base,
                "metric": "unreadable_images",
                "evaluator": "-",
                "value": len(errors),
                "n": len(firsts) + len(seconds),
            },
        ]
        return rows
