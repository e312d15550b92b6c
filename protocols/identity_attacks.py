"""Two identity attacks from CIAGAN section 4.4, on CelebA split by identity (see celeba.py).

landmark-attack: a Proxy-NCA identifier trained only on landmark drawings (the CIAGAN drawing:
jaw, nose bridge, inner lips) of real train identities. Recall@1 of real test landmarks is the
leak that landmarks alone carry (paper: 30.5%); for a method, landmarks are re-extracted (dlib)
from its anonymized faces and matched against the real test landmarks (paper, CIAGAN: 1.9%).
A query whose anonymized face yields no landmarks counts as a miss and is counted.

faceswap: is an identity-conditioned method just pasting its target identity? Each generated
image is labelled with its target identity and matched (Recall@1) against real images of the
method's identities; a face swapper scores high, a true anonymizer near chance. Methods that
are not identity-conditioned are skipped with a note row, not an error.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from anonbench.api import Anonymizer, Option, Protocol, RunContext
from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError
from anonbench.evaluate import real_items, run_kwargs, store_items
from anonbench.metrics import catalog
from anonbench.scorers.attackers import embed_trained, fit_attacker, trained_attacker
from anonbench.splits import SPLIT_OPTIONS, Split, analyse_test, load_split


def _recall(
    ctx: RunContext,
    q: np.ndarray,
    q_ids: list[str],
    q_src: list[str],
    g: np.ndarray,
    g_ids: list[str],
    g_keys: list[str],
    valid: np.ndarray,
) -> tuple[float, float, float, int]:
    """Recall@1 in percent with an identity bootstrap; queries with valid=False are misses."""
    from anonbench.metrics.retrieval import bootstrap_ci, nearest_neighbour_hits

    hits = np.zeros(len(q_ids))
    if valid.any() and len(g):
        idx = np.flatnonzero(valid)
        hits[idx] = nearest_neighbour_hits(
            q[idx], [q_ids[i] for i in idx], [q_src[i] for i in idx], g, g_ids, g_keys
        )
    hits *= 100
    lo, hi = bootstrap_ci(hits, groups=q_ids, seed=ctx.seed)
    return float(hits.mean()) if len(hits) else math.nan, lo, hi, len(hits)


ATTACKERS = ("pnca-landmarks", "pnca-landmark-points")


class LandmarkAttack(Protocol):
    """Identity from landmarks alone: real test landmarks, and landmarks of anonymized faces."""

    name = "landmark-attack"
    version = "2"
    datasets = ("celeba", "folders")
    metrics = catalog.specs(
        "recall_at_1",
        "landmarks_missing",
    )
    options = (
        *SPLIT_OPTIONS,
        Option(
            "attacker",
            str,
            "pnca-landmarks",
            "pnca-landmarks (CNN on the drawings) or pnca-landmark-points (MLP on its points)",
        ),
    )

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None

    def prepare(self, ctx: RunContext) -> None:
        self._prepare(ctx)

    def _prepare(self, ctx: RunContext) -> dict[str, Any]:
        if self._state is not None:
            return self._state
        split = load_split(ctx)
        org = ctx.originals
        test = analyse_test(ctx, split, warn=False)  # boxes frozen before the train analysis
        name = str(ctx.options.get("attacker", "pnca-landmarks"))
        if name not in ATTACKERS:
            raise AnonbenchError(f"landmark-attack: attacker={name!r}: expected one of {ATTACKERS}")
        att = trained_attacker(name, ctx, cache_dir=ctx.cache_dir)
        fit_attacker(ctx, att, split.train)
        g, fb = embed_trained(ctx, att, real_items(ctx, test))
        keep = ~fb
        gallery = [r for r, k in zip(test, keep, strict=True) if k]
        self._state = {
            "att": att,
            "test": gallery,
            "gallery": g[keep],
            "g_keys": [r.key for r in gallery],
            "g_ids": [r.identity for r in gallery],
        }
        ctx.extra[self.name] = {
            **split.info,
            **getattr(att, "fit_info", {}),
            "test_images_with_landmarks": len(gallery),
            **org.describe(split.test),
        }
        return self._state

    def records(self, method: Anonymizer, ctx: RunContext) -> list[ImageRecord]:
        return self._prepare(ctx)["test"]

    def evaluate(self, method: Anonymizer, store: Any, ctx: RunContext) -> list[dict[str, Any]]:
        st = self._prepare(ctx)
        test: list[ImageRecord] = st["test"]
        q, fb = embed_trained(ctx, st["att"], store_items(ctx, test, store))
        ids = [r.identity for r in test]
        v, lo, hi, n = _recall(
            ctx, q, ids, [r.key for r in test], st["gallery"], st["g_ids"], st["g_keys"], ~fb
        )
        base = {"dataset": ctx.data.label, "split": "test"}
        return [
            {
                **base,
                "metric": "recall_at_1",
                "evaluator": st["att"].name,
                "value": v,
                "ci_low": lo,
                "ci_high": hi,
                "n": n,
                "note": "queries: landmarks re-extracted from this method's outputs",
            },
            {
                **base,
                "metric": "landmarks_missing",
                "evaluator": "dlib-68",
                "value": int(fb.sum()),
                "n": n,
            },
            {
                **base,
                "metric": "recall_at_1",
                "evaluator": "chance",
                "value": 100.0 / max(1, len(set(st["g_ids"]))),
                "n": len(set(st["g_ids"])),
            },
        ]


class FaceSwapCheck(Protocol):
    """Recall@1 of generated faces against their TARGET identity (high = face swapping)."""

    name = "faceswap"
    version = "2"
    datasets = ("celeba", "folders")
    metrics = catalog.specs(
        "target_recall_at_1",
    )
    options = (
        Option("recognizers", str, "dlib-resnet", "comma-separated recognizers"),
        *SPLIT_OPTIONS,
    )

    def __init__(self) -> None:
        self._split: Split | None = None

    def _usable(self, method: Anonymizer, ctx: RunContext) -> tuple[list[str], str]:
        """The method's target identities present in the dataset, or why it is skipped."""
        labels = [str(x) for x in getattr(method, "target_labels", None) or []]
        if not method.meta.identity_conditioned:
            return [], f"skipped: {method.name} is not identity-conditioned"
        if not labels:
            return [], (
                f"skipped: {method.name}'s checkpoint does not name the dataset identity of "
                "each target"
            )
        present = {r.identity for r in ctx.data.records}
        usable = sorted(set(labels) & present)
        if len(usable) < 2:
            return [], (
                f"skipped: {ctx.data.label} holds real images of {len(usable)} of "
                f"{method.name}'s {len(labels)} target identities (needs 2 or more)"
            )
        return usable, ""

    def records(self, method: Anonymizer, ctx: RunContext) -> list[ImageRecord]:
        if not self._usable(method, ctx)[0]:
            return []
        if self._split is None:
            self._split = load_split(ctx)
        # boxes frozen before the target identities' gallery is analysed
        return analyse_test(ctx, self._split, warn=False)

    def targets(self, method: Anonymizer, ctx: RunContext) -> dict[str, int] | None:
        usable, _ = self._usable(method, ctx)
        if not usable:
            return None
        labels = [str(x) for x in method.target_labels]  # type: ignore[attr-defined]
        index = {lab: i for i, lab in enumerate(labels)}
        rng = random.Random(ctx.seed)
        return {r.key: index[rng.choice(usable)] for r in self.records(method, ctx)}

    def evaluate(self, method: Anonymizer, store: Any, ctx: RunContext) -> list[dict[str, Any]]:
        from anonbench.evaluate import evaluate_images

        base = {"dataset": ctx.data.label, "split": "test", "metric": "target_recall_at_1"}
        usable, why = self._usable(method, ctx)
        if not usable:
            print(f"note: {why}")
            return [{**base, "evaluator": "-", "value": math.nan, "n": 0, "note": why}]
        test = self.records(method, ctx)
        labels = [str(x) for x in method.target_labels]  # type: ignore[attr-defined]
        targets = {k: labels[t] for k, t in (self.targets(method, ctx) or {}).items()}
        gallery = [r for r in ctx.data.records if r.identity in set(usable)]
        org = ctx.originals
        org.analyze(gallery, "analyse target identities")
        gallery = org.readable(gallery)
        names = [n.strip() for n in str(ctx.options["recognizers"]).split(",") if n.strip()]
        kw = run_kwargs(ctx)
        q = evaluate_images(store_items(ctx, test, store), [], names, desc="faceswap outputs", **kw)
        g = evaluate_images(real_items(ctx, gallery), [], names, desc="faceswap gallery", **kw)
        valid = np.array([not store.entries.get(r.key, {}).get("missed", True) for r in test])
        rows = []
        for ev in names:
            v, lo, hi, n = _recall(
                ctx,
                np.stack([q[r.key]["embs"][ev][0] for r in test]),
                [targets[r.key] for r in test],
                [f"q:{r.key}" for r in test],
                np.stack([g[r.key]["embs"][ev][0] for r in gallery]),
                [r.identity for r in gallery],
                [r.key for r in gallery],
                valid,
            )
            rows.append(
                {
                    **base,
                    "evaluator": ev,
                    "value": v,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                    "note": "label = target identity",
                }
            )
        rows.append({**base, "evaluator": "chance", "value": 100.0 / len(usable), "n": len(usable)})
        split = self._split
        ctx.extra[self.name] = {
            **(split.info if split else {}),
            "target_identities_in_data": len(usable),
        }
        return rows
