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

from anonbench.api import Anonymizer, MetricSpec, Protocol, RunContext
from anonbench.cache import Cache
from anonbench.data.celeba import CELEBA_FACE_BOX
from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError
from anonbench.protocols.celeba import _opt, load_split
from anonbench.registry import register_protocol


def landmark_image(image: np.ndarray, analyzer: Any) -> np.ndarray | None:
    """The CIAGAN landmark drawing (218x178 RGB) of the face nearest the aligned face box, or
    None when dlib finds no face there."""
    from anonbench.faces.mask import choose_box
    from anonbench.methods.ciagan.preprocess import crop_face, landmark_rgb

    a = analyzer(image)
    if len(a) == 0:
        return None
    boxes = [tuple(float(v) for v in b) for b in a.boxes]
    box, fell_back = choose_box(boxes, CELEBA_FACE_BOX)
    if fell_back:
        return None
    return landmark_rgb(crop_face(image, a.landmarks[boxes.index(box)]).lines)


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
    if valid.any():
        idx = np.flatnonzero(valid)
        hits[idx] = nearest_neighbour_hits(
            q[idx], [q_ids[i] for i in idx], [q_src[i] for i in idx], g, g_ids, g_keys
        )
    hits *= 100
    lo, hi = bootstrap_ci(hits, groups=q_ids, seed=ctx.seed)
    return float(hits.mean()), lo, hi, len(hits)


@register_protocol("landmark-attack")
class LandmarkAttack(Protocol):
    """Identity from landmarks alone: real test landmarks, and landmarks of anonymized faces."""

    name = "landmark-attack"
    version = "1"
    datasets = ("celeba",)
    metrics = (
        MetricSpec(
            "recall_at_1",
            False,
            "% of queries (landmark drawings) whose nearest real "
            "test landmark drawing has the source identity",
        ),
        MetricSpec(
            "landmarks_missing",
            None,
            "anonymized faces in which dlib found no face "
            "to draw landmarks from (counted as misses)",
        ),
    )

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None

    def _prepare(self, ctx: RunContext) -> dict[str, Any]:
        if self._state is not None:
            return self._state
        from tqdm.auto import tqdm

        from anonbench.data.images import read_rgb
        from anonbench.faces.analysis import FaceAnalyzer
        from anonbench.faces.pnca import PNCAConfig, cached_train

        train, test, _, test_ids, info = load_split(ctx, self.name)
        analyzer = FaceAnalyzer(cache=Cache(ctx.cache_dir))
        quiet = ctx.options.get("quiet", False)
        tr_imgs, tr_ids = [], []
        for r in tqdm(train, desc="landmarks of train images", disable=quiet, unit="img"):
            lm = landmark_image(read_rgb(r.path), analyzer)
            if lm is not None:
                tr_imgs.append(lm)
                tr_ids.append(r.identity)
        real: dict[str, np.ndarray] = {}
        images: dict[str, np.ndarray] = {}
        for r in tqdm(test, desc="landmarks of test images", disable=quiet, unit="img"):
            img = read_rgb(r.path)
            images[r.key] = img
            lm = landmark_image(img, analyzer)
            if lm is not None:
                real[r.key] = lm
        cfg = PNCAConfig(
            epochs=int(_opt(ctx, "pnca_epochs", str(PNCAConfig.epochs))), seed=ctx.seed
        )
        net = cached_train(
            ctx.cache_dir, tr_imgs, tr_ids, cfg, "pnca on landmark drawings", quiet=quiet
        )
        keys = [r.key for r in test if r.key in real]
        ident = {r.key: r.identity for r in test}
        self._state = {
            "net": net,
            "analyzer": analyzer,
            "test": test,
            "images": images,
            "ident": ident,
            "g_keys": keys,
            "g_ids": [ident[k] for k in keys],
            "gallery": net.embed_aligned([real[k] for k in keys]),
            "n_test_ids": len(test_ids),
        }
        ctx.extra["landmark-attack"] = {
            **info,
            "train_images_with_landmarks": len(tr_imgs),
            "test_images_with_landmarks": len(keys),
        }
        return self._state

    def run(self, method: Anonymizer, ctx: RunContext) -> list[dict[str, Any]]:
        from anonbench.anonymize import anonymize_image

        st = self._prepare(ctx)
        test: list[ImageRecord] = [r for r in st["test"] if r.key in set(st["g_keys"])]
        drawings, valid = [], []
        for r in test:
            img = st["images"][r.key]
            out = anonymize_image(method, img, st["analyzer"](img), r.key)
            lm = landmark_image(out, st["analyzer"])
            valid.append(lm is not None)
            drawings.append(lm if lm is not None else np.full((218, 178, 3), 255, np.uint8))
        q = st["net"].embed_aligned(drawings)
        ids = [r.identity for r in test]
        v, lo, hi, n = _recall(
            ctx,
            q,
            ids,
            [r.key for r in test],
            st["gallery"],
            st["g_ids"],
            st["g_keys"],
            np.array(valid),
        )
        base = {"dataset": "celeba", "split": "test"}
        return [
            {
                **base,
                "metric": "recall_at_1",
                "evaluator": "pnca-landmarks",
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
                "value": int(n - sum(valid)),
                "n": n,
            },
            {
                **base,
                "metric": "recall_at_1",
                "evaluator": "chance",
                "value": 100.0 / len(set(st["g_ids"])),
                "n": len(set(st["g_ids"])),
            },
        ]


@register_protocol("faceswap")
class FaceSwapCheck(Protocol):
    """Recall@1 of generated faces against their TARGET identity (high = face swapping)."""

    name = "faceswap"
    version = "1"
    datasets = ("celeba",)
    metrics = (
        MetricSpec(
            "target_recall_at_1",
            False,
            "% of generated faces whose nearest real image "
            "(of the method's identities) has the target identity; chance = 1/identities",
        ),
    )

    def run(self, method: Anonymizer, ctx: RunContext) -> list[dict[str, Any]]:
        from anonbench.anonymize import anonymize_image
        from anonbench.data.celeba import load_celeba
        from anonbench.data.images import read_rgb
        from anonbench.faces.analysis import FaceAnalyzer
        from anonbench.registry import EMBEDDERS

        base = {"dataset": "celeba", "split": "test", "metric": "target_recall_at_1"}
        labels = getattr(method, "target_labels", None)
        if not method.meta.identity_conditioned or not labels:
            why = (
                "not identity-conditioned"
                if not method.meta.identity_conditioned
                else "its checkpoint does not name the dataset identity of each target"
            )
            return [
                {
                    **base,
                    "evaluator": "-",
                    "value": math.nan,
                    "n": 0,
                    "note": f"skipped: {method.name} is {why}",
                }
            ]
        if ctx.data_root is None:
            raise AnonbenchError("the faceswap protocol needs --data-root (aligned CelebA)")
        _, test, _, _, info = load_split(ctx, self.name)
        ds = load_celeba(ctx.data_root)
        gallery = [r for r in ds.records if r.identity in set(labels)]
        if len({r.identity for r in gallery}) < 2:
            raise AnonbenchError(f"{method.name}'s target identities are not in {ctx.data_root}")
        rng = random.Random(ctx.seed)
        index = {lab: i for i, lab in enumerate(labels)}
        usable = sorted({r.identity for r in gallery})
        targets = [index[rng.choice(usable)] for _ in test]
        analyzer = FaceAnalyzer(cache=Cache(ctx.cache_dir))
        queries, q_ids, valid = [], [], []
        for r, t in zip(test, targets, strict=True):
            img = read_rgb(r.path)
            a = analyzer(img)
            valid.append(len(a) > 0)
            queries.append(anonymize_image(method, img, a, r.key, target=t))
            q_ids.append(labels[t])
        g_imgs = [read_rgb(r.path) for r in gallery]
        rows = []
        for ev in [e for e in _opt(ctx, "recognizers", "dlib-resnet").split(",") if e]:
            emb = EMBEDDERS.create(ev)
            q, _ = emb.embed(queries, CELEBA_FACE_BOX)
            g, _ = emb.embed(g_imgs, CELEBA_FACE_BOX)
            v, lo, hi, n = _recall(
                ctx,
                q,
                q_ids,
                [f"q:{r.key}" for r in test],
                g,
                [r.identity for r in gallery],
                [r.key for r in gallery],
                np.array(valid),
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
        ctx.extra["faceswap"] = {**info, "target_identities_in_data": len(usable)}
        return rows
