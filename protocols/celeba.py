"""CelebA protocols (CIAGAN Tables 1, 2, 4): detection rate, identity Recall@1, FID.

Identities are split (seeded) into a train set, used only to train identity networks, and a
disjoint test set. Every test image is anonymized once per method; then
- detection rate: % of anonymized images in which a detector finds a face with IoU >= 0.5 to
  its own detection on the original (images whose original it misses are left out, counted);
- Recall@1: query = anonymized image, gallery = real test images except the query's source;
  a hit when the nearest gallery image has the source identity; 95% interval by resampling
  identities; chance = 100 / number of test identities;
- FID: pytorch-fid Inception pool3 features of anonymized vs real test images.
Evaluators whose weights are not on disk are reported as unavailable rows, never replaced.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anonbench.api import Anonymizer, MetricSpec, Protocol, RunContext
from anonbench.cache import Cache, array_digest
from anonbench.data.celeba import CELEBA_FACE_BOX
from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError, UnknownNameError
from anonbench.faces.cached import cached_boxes, cached_embedding
from anonbench.registry import register_protocol

DEFAULT_DETECTORS = "dlib-hog,retinaface,mtcnn"
DEFAULT_RECOGNIZERS = "pnca,dlib-resnet,mobilefacenet"
TORCH_RECOGNIZERS = ("pnca", "pnca-adaptive")  # batched in the main process
DET_IOU = 0.5


def _opt(ctx: RunContext, key: str, default: str) -> str:
    return str(ctx.options.get(key, default))


def _names(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


@dataclass
class _State:
    method: Anonymizer | None
    analyzer: Any
    detectors: dict[str, Any]
    embedders: dict[str, Any]
    cache: Cache


def _build_state(
    method: Anonymizer | None, detectors: list[str], embedders: list[str], cache_dir: str
) -> _State:
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.registry import DETECTORS, EMBEDDERS

    cache = Cache(cache_dir)
    return _State(
        method,
        FaceAnalyzer(cache=cache) if method is not None else None,
        {n: DETECTORS.create(n) for n in detectors},
        {n: EMBEDDERS.create(n) for n in embedders},
        cache,
    )


def _evaluate(st: _State, item: tuple[str, str]) -> dict[str, Any]:
    """Reads one image, anonymizes it (when a method is set), runs detectors and embedders."""
    from anonbench.anonymize import load_anonymized
    from anonbench.data.images import ImageReadError

    key, path = item
    try:
        img, faces = load_anonymized(st.method, st.analyzer, path, key)
    except ImageReadError as e:
        return {"key": key, "error": str(e)}
    digest = array_digest(img)
    dets = {n: cached_boxes(st.cache, d, img, digest) for n, d in st.detectors.items()}
    embs = {
        n: cached_embedding(st.cache, e, img, CELEBA_FACE_BOX, digest)
        for n, e in st.embedders.items()
    }
    return {"key": key, "error": None, "image": img, "faces": faces, "dets": dets, "embs": embs}


@dataclass
class _Prepared:
    label: str
    test: list[ImageRecord]
    train: list[ImageRecord]
    train_ids: list[str]
    test_ids: list[str]
    detectors: list[str]
    embedders: list[str]  # per-image (worker) embedders
    torch_recognizers: list[str]
    unavailable: dict[str, str]
    real: dict[str, dict[str, Any]] = field(default_factory=dict)
    pnca: Any = None
    gallery_pnca: np.ndarray | None = None
    fid_real: np.ndarray | None = None


@register_protocol("celeba")
class CelebAProtocol(Protocol):
    """CelebA: detection rate, identity Recall@1 and FID of anonymized test identities."""

    name = "celeba"
    version = "1"
    datasets = ("celeba",)
    metrics = (
        MetricSpec(
            "detection_rate",
            True,
            "% of anonymized faces a detector still finds "
            "(IoU >= 0.5 with its detection on the original)",
        ),
        MetricSpec(
            "recall_at_1",
            False,
            "% of anonymized queries whose nearest real gallery "
            "image has the source identity; lower = better anonymization",
        ),
        MetricSpec("fid", False, "Frechet Inception distance, anonymized vs real test images"),
        MetricSpec("faces_missed", None, "test images in which the anonymizer found no face"),
        MetricSpec(
            "embedder_no_face",
            None,
            "anonymized images the recognizer embedded "
            "through the fixed face box (its detector found no face)",
        ),
        MetricSpec(
            "original_not_detected",
            None,
            "originals a detector misses (left out of its detection rate)",
        ),
    )

    def __init__(self) -> None:
        self._prep: _Prepared | None = None

    # -- shared preparation ------------------------------------------------------------------
    def _prepare(self, ctx: RunContext) -> _Prepared:
        if self._prep is not None:
            return self._prep
        from anonbench.registry import DETECTORS, EMBEDDERS

        train, test, train_ids, test_ids, split_info = load_split(ctx, "celeba")
        unavailable: dict[str, str] = {}
        detectors = [
            n
            for n in _names(_opt(ctx, "detectors", DEFAULT_DETECTORS))
            if _available(DETECTORS, n, unavailable)
        ]
        recognizers = _names(_opt(ctx, "recognizers", DEFAULT_RECOGNIZERS))
        torch_recs = [n for n in recognizers if n in TORCH_RECOGNIZERS]
        embedders = [
            n
            for n in recognizers
            if n not in TORCH_RECOGNIZERS and _available(EMBEDDERS, n, unavailable)
        ]
        for n, why in unavailable.items():
            print(f"warning: evaluator {n} unavailable: {why}")
        p = _Prepared(
            "celeba",
            test,
            train,
            train_ids,
            test_ids,
            detectors,
            embedders,
            torch_recs,
            unavailable,
        )
        ctx.extra["celeba"] = {
            **split_info,
            "detectors": detectors,
            "recognizers": embedders + torch_recs,
            "unavailable": unavailable,
            "face_box": CELEBA_FACE_BOX,
        }
        real = self._evaluate_all(None, test, ctx, p, "celeba real test images")
        p.real = real
        if "pnca" in torch_recs or "pnca-adaptive" in torch_recs:
            p.pnca = self._pnca(ctx, p, None)
        self._prep = p
        return p

    def _evaluate_all(
        self,
        method: Anonymizer | None,
        records: list[ImageRecord],
        ctx: RunContext,
        p: _Prepared,
        desc: str,
    ) -> dict[str, dict[str, Any]]:
        from tqdm.auto import tqdm

        from anonbench.parallel import map_items

        builder = functools.partial(_build_state, method, p.detectors, p.embedders, ctx.cache_dir)
        items = [(r.key, str(r.path)) for r in records]
        out = {}
        for r in tqdm(
            map_items(_evaluate, builder, items, workers=ctx.workers),
            total=len(items),
            desc=desc,
            unit="img",
            dynamic_ncols=True,
            disable=ctx.options.get("quiet", False),
        ):
            if r["error"]:
                print(f"warning: {r['error']} (left out)")
            out[r["key"]] = r
        return out

    def _pnca(self, ctx: RunContext, p: _Prepared, adaptive: tuple[str, list[np.ndarray]] | None):
        """The Proxy-NCA identifier: from --option identifier=PATH, or trained on the train
        identities (real images; plus the method's outputs for the adaptive attacker) and
        cached by split, data and config."""
        import torch

        from anonbench.data.images import read_rgb
        from anonbench.faces.pnca import PNCAConfig, PNCAEmbedder, cached_train

        given = ctx.options.get("identifier")
        if given and adaptive is None:
            ckpt = torch.load(given, map_location="cpu", weights_only=True)
            overlap = set(ckpt.get("classes", [])) & set(p.test_ids)
            if overlap:
                raise AnonbenchError(
                    f"identifier {given} was trained on {len(overlap)} test "
                    "identities of this split (use the same --seed)"
                )
            return PNCAEmbedder(ckpt)
        cfg = PNCAConfig(
            epochs=int(_opt(ctx, "pnca_epochs", str(PNCAConfig.epochs))), seed=ctx.seed
        )
        images = [read_rgb(r.path) for r in p.train]
        labels = [r.identity for r in p.train]
        desc = "pnca identifier (real train images)"
        if adaptive is not None:
            name, anon = adaptive
            images, labels = images + anon, labels + labels
            desc = f"pnca-adaptive for {name} (real + anonymized train images)"
        torch.set_num_threads(max(1, ctx.workers))
        quiet = ctx.options.get("quiet", False)
        return cached_train(ctx.cache_dir, images, labels, cfg, desc, quiet=quiet)

    # -- one method --------------------------------------------------------------------------
    def run(self, method: Anonymizer, ctx: RunContext) -> list[dict[str, Any]]:
        from anonbench.examples import pick_examples, save_examples, save_missed
        from anonbench.metrics.retrieval import bootstrap_ci, nearest_neighbour_hits

        p = self._prepare(ctx)
        anon = self._evaluate_all(method, p.test, ctx, p, f"celeba {method.name}")
        ok = [r for r in p.test if not anon[r.key]["error"] and not p.real[r.key]["error"]]
        ident = {r.key: r.identity for r in p.test}
        base = {"dataset": p.label, "split": "test"}
        rows: list[dict[str, Any]] = []

        chosen = set(pick_examples([(r.key, r.identity) for r in ok]))
        save_examples(
            ctx.out_dir,
            "celeba",
            method.name,
            [(r.key, r.identity, anon[r.key]["image"]) for r in ok if r.key in chosen],
        )

        save_missed(
            ctx.out_dir, "celeba", method.name, [r.key for r in ok if anon[r.key]["faces"] == 0]
        )
        rows.append(
            {
                **base,
                "metric": "faces_missed",
                "evaluator": "dlib-hog",
                "value": sum(anon[r.key]["faces"] == 0 for r in ok),
                "n": len(ok),
            }
        )
        # detection rate, per detector
        from anonbench.faces.mask import choose_box, iou

        for d in p.detectors:
            found, missing_orig = [], 0
            for r in ok:
                orig = [tuple(b) for b in p.real[r.key]["dets"][d]]
                box, fell_back = choose_box(orig, CELEBA_FACE_BOX)
                if fell_back:
                    missing_orig += 1
                    continue
                found.append(any(iou(tuple(b), box) >= DET_IOU for b in anon[r.key]["dets"][d]))
            vals = np.array(found, np.float64) * 100
            lo, hi = bootstrap_ci(vals, seed=ctx.seed)
            rows.append(
                {
                    **base,
                    "metric": "detection_rate",
                    "evaluator": d,
                    "value": float(vals.mean()) if len(vals) else math.nan,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(vals),
                }
            )
            rows.append(
                {
                    **base,
                    "metric": "original_not_detected",
                    "evaluator": d,
                    "value": missing_orig,
                    "n": len(ok),
                }
            )
        # Recall@1, per recognizer
        keys = [r.key for r in ok]
        ids = [ident[k] for k in keys]

        def recall_rows(name: str, q: np.ndarray, g: np.ndarray, note: str = "") -> None:
            hits = nearest_neighbour_hits(q, ids, keys, g, ids, keys).astype(np.float64) * 100
            lo, hi = bootstrap_ci(hits, groups=ids, seed=ctx.seed)
            rows.append(
                {
                    **base,
                    "metric": "recall_at_1",
                    "evaluator": name,
                    "value": float(hits.mean()),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(hits),
                    "note": note,
                }
            )

        for e in p.embedders:
            q = np.stack([anon[k]["embs"][e][0] for k in keys])
            g = np.stack([p.real[k]["embs"][e][0] for k in keys])
            recall_rows(e, q, g)
            rows.append(
                {
                    **base,
                    "metric": "embedder_no_face",
                    "evaluator": e,
                    "value": sum(anon[k]["embs"][e][1] for k in keys),
                    "n": len(keys),
                }
            )
        if "pnca" in p.torch_recognizers:
            if p.gallery_pnca is None:
                p.gallery_pnca = p.pnca.embed_aligned([p.real[k]["image"] for k in keys])
            recall_rows(
                "pnca", p.pnca.embed_aligned([anon[k]["image"] for k in keys]), p.gallery_pnca
            )
        if "pnca-adaptive" in p.torch_recognizers:
            train_anon = self._anonymize_train(method, ctx, p)
            net = self._pnca(ctx, p, (method.name, train_anon))
            recall_rows(
                "pnca-adaptive",
                net.embed_aligned([anon[k]["image"] for k in keys]),
                net.embed_aligned([p.real[k]["image"] for k in keys]),
                "trained on real + this method's anonymized train identities",
            )
        for n, why in p.unavailable.items():
            metric = "detection_rate" if n in _detector_names() else "recall_at_1"
            rows.append(
                {
                    **base,
                    "metric": metric,
                    "evaluator": n,
                    "value": math.nan,
                    "n": 0,
                    "note": f"unavailable: {why}",
                }
            )
        rows.append(
            {
                **base,
                "metric": "recall_at_1",
                "evaluator": "chance",
                "value": 100.0 / len(set(ids)),
                "n": len(set(ids)),
                "note": "1 / number of test identities",
            }
        )
        if _opt(ctx, "fid", "1") not in ("0", "false", "no"):
            rows.append(self._fid(method, ctx, p, anon, keys, base))
        return rows

    def _anonymize_train(
        self, method: Anonymizer, ctx: RunContext, p: _Prepared
    ) -> list[np.ndarray]:
        from tqdm.auto import tqdm

        from anonbench.parallel import map_items

        builder = functools.partial(_build_state, method, [], [], ctx.cache_dir)
        items = [(r.key, str(r.path)) for r in p.train]
        out = []
        for r in tqdm(
            map_items(_evaluate, builder, items, workers=ctx.workers),
            total=len(items),
            desc=f"anonymize train ({method.name})",
            unit="img",
            disable=ctx.options.get("quiet", False),
        ):
            if not r["error"]:
                out.append(r["image"])
        if len(out) != len(p.train):
            raise AnonbenchError("unreadable train images: the adaptive attacker needs all")
        return out

    def _fid(
        self,
        method: Anonymizer,
        ctx: RunContext,
        p: _Prepared,
        anon: dict[str, dict[str, Any]],
        keys: list[str],
        base: dict[str, Any],
    ) -> dict[str, Any]:
        import warnings

        import torch

        from anonbench.metrics.fid import FIDFeatureExtractor, fid_from_features

        torch.set_num_threads(max(1, ctx.workers))
        cache = Cache(ctx.cache_dir)
        try:
            ext = FIDFeatureExtractor()
        except AnonbenchError as e:
            return {
                **base,
                "metric": "fid",
                "evaluator": "inception-v3",
                "value": math.nan,
                "n": 0,
                "note": f"unavailable: {e}",
            }

        def feats(images: list[np.ndarray], desc: str) -> np.ndarray:
            h = hashlib.sha256()
            for im in images:
                h.update(array_digest(im).encode())
            hit = cache.get("fid-features", f"{ext.version}/{ext.weights_source}", h.hexdigest())
            if hit is not None:
                return hit["features"]
            if not ctx.options.get("quiet", False):
                print(f"FID features: {desc} ({len(images)} images)")
            f = ext.features(images)
            cache.put(
                "fid-features",
                f"{ext.version}/{ext.weights_source}",
                h.hexdigest(),
                {"features": f},
            )
            return f

        if p.fid_real is None:
            p.fid_real = feats([p.real[k]["image"] for k in keys], "real test images")
        fa = feats([anon[k]["image"] for k in keys], method.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fid_from_features(fa, p.fid_real, weights_source=ext.weights_source)
        note = "; ".join([res.weights_source, *res.warnings])
        return {
            **base,
            "metric": "fid",
            "evaluator": "inception-v3",
            "value": res.fid,
            "n": res.n1,
            "note": note,
        }


def load_split(
    ctx: RunContext, protocol: str
) -> tuple[list[ImageRecord], list[ImageRecord], list[str], list[str], dict[str, Any]]:
    """CelebA at ctx.data_root split by identity (seeded): (train records, test records,
    train ids, test ids, a description for run.json). Options: test_fraction,
    max_per_identity (test images per identity; 0 = all)."""
    from anonbench.data.celeba import load_celeba
    from anonbench.data.splits import identity_split

    if ctx.data_root is None:
        raise AnonbenchError(
            f"the {protocol} protocol needs --data-root (aligned CelebA: "
            "img_align_celeba/ + identity_CelebA.txt)"
        )
    ds = load_celeba(ctx.data_root)
    frac = float(_opt(ctx, "test_fraction", "0.5"))
    train_ids, test_ids = identity_split([r.identity for r in ds.records], ctx.seed, frac)
    per_id = int(_opt(ctx, "max_per_identity", "0"))
    test = _cap([r for r in ds.records if r.identity in set(test_ids)], per_id)
    train = [r for r in ds.records if r.identity in set(train_ids)]
    info = {
        "data_root": str(ctx.data_root),
        "seed": ctx.seed,
        "test_fraction": frac,
        "max_per_identity": per_id,
        "train_identities": train_ids,
        "test_identities": test_ids,
        "n_test_images": len(test),
        "n_train_images": len(train),
        "missing_files": len(ds.missing_files),
    }
    return train, test, train_ids, test_ids, info


def _available(registry: Any, name: str, unavailable: dict[str, str]) -> bool:
    """Builds the evaluator once to learn whether its weights are on disk. A typo (unknown
    name) still fails the run; a missing model is recorded in `unavailable`."""
    try:
        registry.create(name)
    except UnknownNameError:
        raise
    except AnonbenchError as e:
        unavailable[name] = str(e)
        return False
    return True


def _detector_names() -> set[str]:
    from anonbench.registry import DETECTORS

    return set(DETECTORS.names())


def _cap(records: list[ImageRecord], per_id: int) -> list[ImageRecord]:
    """At most per_id images per identity (0 = all), keeping the first by key."""
    if per_id <= 0:
        return records
    seen: dict[str, int] = {}
    out = []
    for r in sorted(records, key=lambda r: r.key):
        if seen.get(r.identity, 0) < per_id:
            seen[r.identity] = seen.get(r.identity, 0) + 1
            out.append(r)
    return out
