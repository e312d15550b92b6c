"""The identity protocols (CIAGAN Tables 1, 2, 4) on any identity-labelled dataset:
detection rate, identity Recall@1, FID and KID, and face-geometry utility.

Identities are split (seeded) into a train set, used only to train identity networks, and a
disjoint test set. Every test image is anonymized once per method (the production stage);
then, over the method's output store:
- detection rate: % of anonymized images in which a detector finds a face with IoU >= 0.5 to
  its own detection on the original, the one over the reference face (images whose original
  it misses are left out, counted);
- Recall@1: query = anonymized image, gallery = real test images except the query's source;
  a hit when the nearest gallery image has the source identity; 95% interval by resampling
  identities; chance = 100 / number of test identities;
- FID: pytorch-fid Inception pool3 features of anonymized vs real test images; KID
  (anonbench.metrics.kid) on the same cached features, never extracted twice;
- with `reversal=...`, Recall@1 of each recognizer again (adaptive attackers excepted) after
  the attacker restores every anonymized query (anonbench.metrics.reversal), evaluator
  '<name>+<attack>';
- utility (anonbench.metrics.utility), per landmarker (`landmarkers`, default dlib-68 and
  mediapipe): landmark NME, head-pose error and expression change of the output against the
  original. Each landmarker works with its own detector (dlib-68: dlib-hog; mediapipe: its
  BlazeFace): on the original, that detector's face over the reference face (originals
  without one, or without landmarks, are left out); on the output, its face with IoU >= 0.5
  to that one (the detection-rate rule). An output with no such face or no landmarks counts
  at the metric's ceiling (never dropped from the mean) and in `landmarks_no_face`.
The reference face of an image is the face detected on its own original (anonbench.evaluate);
nothing assumes a dataset's geometry. Evaluators whose weights are not on disk are reported
as unavailable rows, never replaced. Trained attackers (Proxy-NCA and its adaptive variant)
are trained here on the train identities through their `fit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anonbench.api import Anonymizer, Option, Protocol, RunContext
from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError, UnknownNameError
from anonbench.evaluate import real_items, run_kwargs, store_items
from anonbench.metrics import catalog
from anonbench.metrics.catalog import EXPRESSION_CEILING, NME_CEILING, POSE_CEILING
from anonbench.registry import register_protocol
from anonbench.scorers.attackers import embed_trained, fit_attacker, is_trained, trained_attacker
from anonbench.splits import SPLIT_OPTIONS, Split, analyse_test, load_split

DEFAULT_DETECTORS = "dlib-hog,retinaface,mtcnn"
# only evaluators that work after install: mobilefacenet (weights not shipped) and the facenet
# ones (weights downloaded on first use) are there when asked for by name
DEFAULT_RECOGNIZERS = "pnca,dlib-resnet"
DEFAULT_LANDMARKERS = "dlib-68,mediapipe"
# utility ceilings (NME_CEILING, POSE_CEILING, EXPRESSION_CEILING): see the metric catalog
DET_IOU = 0.5
REF_IOU = 0.3  # a detector's own face on the original must overlap the reference this much


def _names(s: str) -> list[str]:
    return [x.strip() for x in str(s).split(",") if x.strip()]


@dataclass
class _Prepared:
    split: Split
    ok: list[ImageRecord]  # test records readable, with their analysis
    detectors: list[str]
    embedders: list[str]  # per-image recognizers (no training)
    trained: dict[str, Any]  # name -> fitted (or to-fit, adaptive) trained attacker
    unavailable: dict[str, str]
    # utility: landmarker name -> landmarker, the detectors they need beyond `detectors`, and
    # landmarkers that cannot run (why)
    landmarkers: dict[str, Any] = field(default_factory=dict)
    lm_detectors: list[str] = field(default_factory=list)
    lm_unavailable: dict[str, str] = field(default_factory=dict)
    # landmarker -> key -> (box on the original, landmarks) or None (left out)
    real_lm: dict[str, dict[str, tuple[Any, np.ndarray] | None]] = field(default_factory=dict)
    real: dict[str, dict[str, Any]] = field(default_factory=dict)
    gallery: dict[str, np.ndarray] = field(default_factory=dict)  # trained attackers
    fid_real: np.ndarray | None = None


@register_protocol("celeba")
class CelebAProtocol(Protocol):
    """Identity protocol: detection rate, identity Recall@1 and FID of anonymized test
    identities, on CelebA or any identity-labelled dataset."""

    name = "celeba"
    version = "2"
    datasets = ("celeba", "folders")
    metrics = catalog.specs(
        "detection_rate",
        "recall_at_1",
        "fid",
        "kid",
        "landmark_nme",
        "pose_error",
        "expression_change",
        "landmarks_no_face",
        "faces_missed",
        "embedder_no_face",
        "original_not_detected",
    )
    options = (
        Option("detectors", str, DEFAULT_DETECTORS, "comma-separated detectors"),
        Option(
            "recognizers",
            str,
            DEFAULT_RECOGNIZERS,
            "comma-separated recognizers (embedders; pnca, pnca-adaptive are trained here; "
            "pnca-face is shipped, trained on the train identities of seed 0, test_fraction 0.5)",
        ),
        Option("identifier", str, "", "a trained Proxy-NCA net (pnca.pt) instead of training"),
        *SPLIT_OPTIONS,
        Option("fid", bool, True, "compute FID (Inception-v3 features)"),
        Option(
            "kid",
            bool,
            True,
            "compute KID on the same Inception-v3 features as FID (fid=0 turns both off)",
        ),
        Option(
            "landmarkers",
            str,
            DEFAULT_LANDMARKERS,
            "comma-separated landmarkers for the utility metrics (landmark_nme, pose_error, "
            "expression_change); empty = none",
        ),
        Option(
            "reversal",
            str,
            "none",
            "reversal attacks restoring each anonymized image before embedding: none, wiener, "
            "richardson-lucy or all (extra recall_at_1 rows per recognizer, adaptive ones "
            "excepted, evaluator '<recognizer>+<attack>')",
        ),
    )

    def __init__(self) -> None:
        self._prep: _Prepared | None = None

    def prepare(self, ctx: RunContext) -> None:
        from anonbench.metrics.reversal import parse_reversal

        parse_reversal(ctx.options.get("reversal"))  # a wrong value fails before any work
        self._prepare(ctx)

    def _prepare(self, ctx: RunContext) -> _Prepared:
        if self._prep is not None:
            return self._prep
        from anonbench.evaluate import create_evaluator, evaluate_images
        from anonbench.registry import DETECTORS, EMBEDDERS

        split = load_split(ctx)
        org = ctx.originals
        ok = analyse_test(ctx, split)  # reference boxes frozen before the train analysis
        unavailable: dict[str, str] = {}

        def available(reg: Any, n: str) -> Any:
            """The evaluator, or None (recorded) when its weights are not on disk; a typo
            (unknown name) still fails the run."""
            try:
                return create_evaluator(reg, n, ctx.device, ctx.batch_size)
            except UnknownNameError:
                raise
            except AnonbenchError as e:
                unavailable[n] = str(e)
                return None

        detectors = [
            n for n in _names(ctx.options["detectors"]) if available(DETECTORS, n) is not None
        ]
        embedders: list[str] = []
        trained: dict[str, Any] = {}
        for n in _names(ctx.options["recognizers"]):
            ev = available(EMBEDDERS, n)
            if ev is None:
                continue
            if is_trained(ev):
                extra = {}
                if n == "pnca" and ctx.options.get("identifier"):
                    extra["checkpoint"] = ctx.options["identifier"]
                trained[n] = trained_attacker(n, ctx, **extra)
            else:
                embedders.append(n)
        landmarkers, lm_unavailable = _landmarkers(ctx, detectors)
        for n, why in {**unavailable, **lm_unavailable}.items():
            print(f"warning: evaluator {n} unavailable: {why}")
        p = _Prepared(split, ok, detectors, embedders, trained, unavailable)
        p.landmarkers, p.lm_unavailable = landmarkers, lm_unavailable
        p.lm_detectors = [
            d
            for d in dict.fromkeys(_lm_detector(lm) for lm in landmarkers.values())
            if d not in detectors
        ]
        ctx.extra[self.name] = {
            **split.info,
            "detectors": detectors,
            "recognizers": embedders + list(trained),
            "landmarkers": {n: _lm_detector(lm) for n, lm in landmarkers.items()},
            "utility_ceilings": {
                "landmark_nme": NME_CEILING,
                "pose_error": POSE_CEILING,
                "expression_change": EXPRESSION_CEILING,
            },
            "unavailable": {**unavailable, **lm_unavailable},
            **org.describe(split.test),
        }
        p.real = evaluate_images(
            real_items(ctx, ok),
            detectors + p.lm_detectors,
            embedders,
            desc=f"{self.name} real test images",
            **run_kwargs(ctx),
        )
        for n, att in trained.items():
            if att.training == "real":
                if getattr(att, "checkpoint", None):
                    overlap = set(getattr(att, "classes", [])) & set(split.test_ids)
                    if overlap:
                        raise AnonbenchError(
                            f"identifier {att.checkpoint} was trained on {len(overlap)} test "
                            "identities of this split (use the same --seed)"
                        )
                else:
                    fit_attacker(ctx, att, split.train)
                p.gallery[n] = embed_trained(ctx, att, real_items(ctx, ok))[0]
        self._prep = p
        return p

    def records(self, method: Anonymizer, ctx: RunContext) -> list[ImageRecord]:
        p = self._prepare(ctx)
        adaptive = any(a.training != "real" for a in p.trained.values())
        return p.ok + (p.split.train if adaptive else [])

    def evaluate(self, method: Anonymizer, store: Any, ctx: RunContext) -> list[dict[str, Any]]:
        from anonbench.evaluate import evaluate_images, warn_fallback
        from anonbench.examples import pick_examples, save_examples, save_missed
        from anonbench.faces.mask import choose_box, iou
        from anonbench.metrics.retrieval import bootstrap_ci, nearest_neighbour_hits

        p = self._prepare(ctx)
        org = ctx.originals
        anon = evaluate_images(
            store_items(ctx, p.ok, store),
            p.detectors + p.lm_detectors,
            p.embedders,
            desc=f"{self.name} {method.name}",
            **run_kwargs(ctx),
        )
        ok = [r for r in p.ok if not anon[r.key]["error"] and not p.real[r.key]["error"]]
        base = {"dataset": ctx.data.label, "split": "test"}
        rows: list[dict[str, Any]] = []
        ref_fallback = sum(org.reference(r.key)[1] for r in ok)
        doubt = warn_fallback(ctx.quiet, ctx.data.label, ref_fallback, len(ok))

        chosen = set(pick_examples([(r.key, r.identity) for r in ok]))
        save_examples(
            ctx.out_dir,
            self.name,
            method.name,
            [(r.key, r.identity, store.load(r)) for r in ok if r.key in chosen],
        )
        missed = store.missed(ok)
        save_missed(ctx.out_dir, self.name, method.name, missed)
        rows.append(
            {
                **base,
                "metric": "faces_missed",
                # one column for every method: for a folder, a missing output file is a miss
                "evaluator": "dlib-hog",
                "value": len(missed),
                "n": len(ok),
                "note": "missing output files count as missed" if store.external else None,
            }
        )
        for d in p.detectors:
            found, missing_orig = [], 0
            for r in ok:
                ref = org.reference(r.key)[0]
                orig = [tuple(float(v) for v in b) for b in p.real[r.key]["dets"][d]]
                box, fell_back = choose_box(orig, ref, REF_IOU)
                if fell_back:
                    missing_orig += 1
                    continue
                found.append(any(iou(tuple(b), box) >= DET_IOU for b in anon[r.key]["dets"][d]))
            vals = np.array(found, np.float64) * 100
            lo, hi = bootstrap_ci(vals, seed=ctx.seed)
            note = []
            if ok and missing_orig == len(ok):
                note.append(f"{d} found no original face at the reference face")
                print(f"warning: {method.name}: {note[-1]}: detection rate n/a")
            rows.append(
                {
                    **base,
                    "metric": "detection_rate",
                    "evaluator": d,
                    "value": float(vals.mean()) if len(vals) else math.nan,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(vals),
                    "note": "; ".join([*note, doubt] if doubt else note) or None,
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
        keys = [r.key for r in ok]
        ids = [r.identity for r in ok]

        def recall_rows(name: str, q: np.ndarray, g: np.ndarray, note: str = "") -> None:
            hits = nearest_neighbour_hits(q, ids, keys, g, ids, keys).astype(np.float64) * 100
            lo, hi = bootstrap_ci(hits, groups=ids, seed=ctx.seed)
            rows.append(
                {
                    **base,
                    "metric": "recall_at_1",
                    "evaluator": name,
                    "value": float(hits.mean()) if len(hits) else math.nan,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(hits),
                    "note": "; ".join(x for x in (note, doubt) if x) or None,
                }
            )

        for e in p.embedders:
            if not keys:
                break
            q = np.stack([anon[k]["embs"][e][0] for k in keys])
            g = np.stack([p.real[k]["embs"][e][0] for k in keys])
            no_face = sum(anon[k]["embs"][e][1] for k in keys)
            fell = attacker_fell_back(e, method.name, no_face, len(keys), "anonymized")
            fell_real = attacker_fell_back(
                e, "the originals", sum(p.real[k]["embs"][e][1] for k in keys), len(keys), "real"
            )
            recall_rows(e, q, g, "; ".join(x for x in (fell_real, fell) if x))
            rows.append(
                {
                    **base,
                    "metric": "embedder_no_face",
                    "evaluator": e,
                    "value": no_face,
                    "n": len(keys),
                }
            )
        pos = {r.key: i for i, r in enumerate(p.ok)}
        sel = [pos[k] for k in keys]
        for n, att in p.trained.items():
            if att.training == "real":
                what = f"{self.name} {method.name} {n}"
                q = embed_trained(ctx, att, store_items(ctx, ok, store), what)[0]
                recall_rows(n, q, p.gallery[n][sel])
            else:
                # adaptive: trained on real + this method's outputs of the train identities
                train = org.readable(p.split.train)
                extra = [(r.key, store.ref(r), org.reference(r.key)[0], r.identity) for r in train]
                fresh = trained_attacker(n, ctx)
                fit_attacker(ctx, fresh, p.split.train, extra)
                q = embed_trained(ctx, fresh, store_items(ctx, ok, store))[0]
                g = embed_trained(ctx, fresh, real_items(ctx, ok))[0]
                recall_rows(n, q, g, "trained on real + this method's anonymized train identities")
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
                "value": 100.0 / max(1, len(set(ids))),
                "n": len(set(ids)),
                "note": "1 / number of test identities",
            }
        )
        if keys:
            rows += self._reversal_rows(method, store, ctx, p, ok, sel, recall_rows)
        rows += _utility_rows(ctx, store, p, ok, anon, base, doubt)
        if ctx.options.get("fid", True):
            rows += self._fid(method, store, ctx, p, ok, base)
        return rows

    def _reversal_rows(
        self,
        method: Anonymizer,
        store: Any,
        ctx: RunContext,
        p: _Prepared,
        ok: list[ImageRecord],
        sel: list[int],
        recall_rows: Any,
    ) -> list[dict[str, Any]]:
        """Recall@1 of each per-image recognizer, and of each trained attacker with a fixed
        checkpoint (training "real", e.g. pnca-face; gallery p.gallery[n][sel]), when the
        attacker restores each anonymized query first (anonbench.metrics.reversal), added
        through recall_rows; returns the embedder_no_face rows of the restored queries.
        Adaptive attackers get none: they would have to be retrained on restored outputs."""
        from anonbench.evaluate import evaluate_images
        from anonbench.metrics.reversal import known_kernel, parse_reversal, restored

        attacks = parse_reversal(ctx.options.get("reversal"))
        fixed = {n: a for n, a in p.trained.items() if a.training == "real"}
        if not attacks or not (p.embedders or fixed):
            return []
        kk = known_kernel(method)
        psf = (
            f"known Gaussian PSF (kernel {kk[0]}, sigma {kk[1] or 'OpenCV default'})"
            if kk
            else "Gaussian PSF width estimated per image"
        )
        keys = [r.key for r in ok]
        rows: list[dict[str, Any]] = []
        for attack in attacks:
            items = [
                (
                    r.key,
                    restored(store.ref(r), attack, method, ctx.originals.reference(r.key)[0]),
                    ctx.originals.reference(r.key)[0],
                )
                for r in ok
            ]
            note = f"reversal attack {attack} before embedding, {psf}"
            for n, att in fixed.items():
                q = embed_trained(ctx, att, items, f"{self.name} {method.name} {n} +{attack}")[0]
                recall_rows(f"{n}+{attack}", q, p.gallery[n][sel], note)
            if not p.embedders:
                continue
            res = evaluate_images(
                items,
                [],
                p.embedders,
                desc=f"{self.name} {method.name} +{attack}",
                **run_kwargs(ctx),
            )
            bad = sorted(k for k in keys if res[k]["error"])
            if bad:  # the restoration read the same files: should not happen
                raise AnonbenchError(f"reversal {attack}: unreadable {bad[0]}: {res[bad[0]]}")
            for e in p.embedders:
                q = np.stack([res[k]["embs"][e][0] for k in keys])
                g = np.stack([p.real[k]["embs"][e][0] for k in keys])
                recall_rows(f"{e}+{attack}", q, g, note)
                rows.append(
                    {
                        "dataset": ctx.data.label,
                        "split": "test",
                        "metric": "embedder_no_face",
                        "evaluator": f"{e}+{attack}",
                        "value": sum(bool(res[k]["embs"][e][1]) for k in keys),
                        "n": len(keys),
                        "note": f"restored by {attack}",
                    }
                )
        return rows

    def _fid(
        self,
        method: Anonymizer,
        store: Any,
        ctx: RunContext,
        p: _Prepared,
        ok: list[ImageRecord],
        base: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """FID and (unless kid=0) KID rows from one set of cached Inception features per
        image set; fid=0 skips the Inception network and so both."""
        import hashlib
        import warnings

        from anonbench.cache import Cache, array_digest
        from anonbench.metrics.fid import FIDFeatureExtractor, fid_from_features

        metrics = ["fid", *(["kid"] if ctx.options.get("kid", True) else [])]
        cache = Cache(ctx.cache_dir)
        try:
            ext = FIDFeatureExtractor(device=ctx.device, batch_size=ctx.batch_size)
        except AnonbenchError as e:
            return [
                {
                    **base,
                    "metric": m,
                    "evaluator": "inception-v3",
                    "value": math.nan,
                    "n": 0,
                    "note": f"unavailable: {e}",
                }
                for m in metrics
            ]

        def feats(images: list[np.ndarray], desc: str) -> np.ndarray:
            h = hashlib.sha256()
            for im in images:
                h.update(array_digest(im).encode())
            comp, ver = "fid-features", f"{ext.version}/{ext.weights_source}"
            hit = cache.get(comp, ver, h.hexdigest())
            if hit is not None:
                return hit["features"]
            if not ctx.quiet:
                print(f"FID features: {desc} ({len(images)} images)")
            f = ext.features(images)
            cache.put(comp, ver, h.hexdigest(), {"features": f})
            return f

        real = feats([ref.load() for _, ref, _ in real_items(ctx, ok)], "real test images")
        fa = feats([store.load(r) for r in ok], method.name)
        rows = []
        if "fid" in metrics:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fid_from_features(fa, real, weights_source=ext.weights_source)
            rows.append(
                {
                    **base,
                    "metric": "fid",
                    "evaluator": "inception-v3",
                    "value": res.fid,
                    "n": res.n1,
                    "note": "; ".join([res.weights_source, *res.warnings]),
                }
            )
        if "kid" in metrics:
            from anonbench.metrics.kid import kid_from_features

            if min(len(fa), len(real)) < 2:
                rows.append(
                    {
                        **base,
                        "metric": "kid",
                        "evaluator": "inception-v3",
                        "value": math.nan,
                        "n": len(fa),
                        "note": "KID needs at least 2 images per set",
                    }
                )
            else:
                k = kid_from_features(fa, real, seed=ctx.seed)
                rows.append(
                    {
                        **base,
                        "metric": "kid",
                        "evaluator": "inception-v3",
                        "value": k.kid,
                        "std": k.std,
                        "n": k.n1,
                        "note": "; ".join(
                            [
                                ext.weights_source,
                                f"{k.subsets} subsets of {k.subset_size}, seed {ctx.seed}",
                                *k.notes,
                            ]
                        ),
                    }
                )
        return rows


def _lm_detector(landmarker: Any) -> str:
    """The detector a landmarker works with: its `detector` attribute, else dlib-hog (the
    analysis detector, dlib-68's partner)."""
    return str(getattr(landmarker, "detector", "dlib-hog"))


def _landmarkers(ctx: RunContext, detectors: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The `landmarkers` option's landmarkers that can run (with their detectors), and why the
    others cannot; an unknown name fails the run."""
    from anonbench.evaluate import create_evaluator
    from anonbench.registry import DETECTORS, LANDMARKERS

    ok: dict[str, Any] = {}
    why: dict[str, str] = {}
    for n in _names(ctx.options.get("landmarkers", DEFAULT_LANDMARKERS)):
        try:
            lm = create_evaluator(LANDMARKERS, n, ctx.device, ctx.batch_size)
            det = _lm_detector(lm)
            if det not in detectors:
                create_evaluator(DETECTORS, det, ctx.device, ctx.batch_size)
        except UnknownNameError:
            raise
        except AnonbenchError as e:
            why[n] = str(e)
            continue
        ok[n] = lm
    return ok, why


def cached_landmarks(cache: Any, landmarker: Any, image: np.ndarray, box: Any) -> np.ndarray:
    """K x 2 float32 landmarks of the face at box (0 x 2: none found), cached by the image's
    content, the landmarker's version and the box rounded to 0.1 pixel."""
    from anonbench.cache import array_digest
    from anonbench.faces.cached import box_key

    comp = f"landmarks-{landmarker.name}"
    key = f"{array_digest(image)}/box{box_key(box)}"
    hit = cache.get(comp, landmarker.version, key)
    if hit is not None:
        return hit["landmarks"]
    lm = np.asarray(landmarker.landmarks(image, tuple(float(v) for v in box)), np.float32)
    lm = lm.reshape(-1, 2)
    cache.put(comp, landmarker.version, key, {"landmarks": lm})
    return lm


@dataclass
class _UtilityAcc:
    """Per-image utility values of one landmarker (NaN where the output failed)."""

    failed: list[bool] = field(default_factory=list)
    nme: list[float] = field(default_factory=list)
    pose: list[float] = field(default_factory=list)
    expression: list[float] = field(default_factory=list)
    axes: list[tuple[float, float, float]] = field(default_factory=list)
    mouth_eye: list[tuple[float, float]] = field(default_factory=list)
    left_out: int = 0

    def add_failure(self) -> None:
        self.failed.append(True)
        self.nme.append(math.nan)
        self.pose.append(math.nan)
        self.expression.append(math.nan)


def _utility_rows(
    ctx: RunContext,
    store: Any,
    p: _Prepared,
    ok: list[ImageRecord],
    anon: dict[str, dict[str, Any]],
    base: dict[str, Any],
    doubt: str,
) -> list[dict[str, Any]]:
    """landmark_nme, pose_error, expression_change and landmarks_no_face per landmarker.

    Per image: the landmarker's detector's face on the original over the reference face
    (none: left out), its landmarks there (none: left out); on the output the detector's face
    with IoU >= DET_IOU to the original's, and its landmarks. An output without either is a
    failure: counted at the metric's ceiling and in landmarks_no_face."""
    from anonbench.cache import Cache
    from anonbench.faces.mask import choose_box, iou
    from anonbench.metrics import utility as U
    from anonbench.metrics.retrieval import bootstrap_ci

    cache = Cache(ctx.cache_dir)
    org = ctx.originals
    rows: list[dict[str, Any]] = []
    acc = {name: _UtilityAcc() for name in p.landmarkers}
    # images outer, landmarkers inner: each image is read once and not kept
    for r in ok:
        original: np.ndarray | None = None
        output: np.ndarray | None = None
        for name, lmk in p.landmarkers.items():
            det, a = _lm_detector(lmk), acc[name]
            real = p.real_lm.setdefault(name, {})
            if r.key not in real:  # once per run: the originals are the same for every method
                ref = org.reference(r.key)[0]
                boxes = [tuple(float(v) for v in b) for b in p.real[r.key]["dets"][det]]
                box, fell_back = choose_box(boxes, ref, REF_IOU)
                real[r.key] = None
                if not fell_back:
                    if original is None:
                        original = real_items(ctx, [r])[0][1].load()
                    lm_o = cached_landmarks(cache, lmk, original, box)
                    if len(lm_o):
                        real[r.key] = (box, lm_o)
            if real[r.key] is None:
                a.left_out += 1
                continue
            box_o, lm_o = real[r.key]
            found = [tuple(float(v) for v in b) for b in anon[r.key]["dets"][det]]
            best = max(found, key=lambda b: iou(b, box_o), default=None)
            lm_a = np.zeros((0, 2), np.float32)
            if best is not None and iou(best, box_o) >= DET_IOU:
                if output is None:
                    output = store.load(r)
                lm_a = cached_landmarks(cache, lmk, output, best)
            if output is None or len(lm_a) != len(lm_o):
                a.add_failure()
                continue
            a.failed.append(False)
            a.nme.append(float(U.nme(lm_a, lm_o)))
            h, w = output.shape[:2]
            rot_o, rot_a = U.head_pose(lm_o, h, w), U.head_pose(lm_a, h, w)
            if rot_o is None or rot_a is None:
                a.pose.append(math.nan)  # a failed fit: at the ceiling
            else:
                d = U.pose_difference(rot_o, rot_a)
                a.pose.append(d.angle)
                a.axes.append((d.yaw, d.pitch, d.roll))
            e = U.expression_change(lm_a, lm_o)
            a.expression.append(e.value)
            a.mouth_eye.append((e.mouth, e.eye))
    for name, lmk in p.landmarkers.items():
        det, a = _lm_detector(lmk), acc[name]
        fail = np.array(a.failed, bool)
        n_fail = int(fail.sum())
        rule = (
            f"{n_fail}/{len(fail)} outputs without a {det} face or {name} landmarks counted "
            "at the ceiling {ceiling:g}"
        )
        if a.left_out:
            rule += f"; {a.left_out} originals without a {det} face or landmarks left out"
        extra = {
            "pose_error": (
                "mean |yaw|, |pitch|, |roll| difference {:.1f}, {:.1f}, {:.1f} deg".format(
                    *np.mean(a.axes, axis=0)
                )
                if a.axes
                else ""
            ),
            "expression_change": (
                "mean mouth-ratio change {:.3f}, eye-ratio change {:.3f}".format(
                    *np.mean(a.mouth_eye, axis=0)
                )
                if a.mouth_eye
                else ""
            ),
        }
        for metric, vals, ceiling in (
            ("landmark_nme", a.nme, NME_CEILING),
            ("pose_error", a.pose, POSE_CEILING),
            ("expression_change", a.expression, EXPRESSION_CEILING),
        ):
            v = U.with_ceiling(np.array(vals, np.float64), fail, ceiling)
            lo, hi = bootstrap_ci(v, seed=ctx.seed)
            notes = [rule.format(ceiling=ceiling), extra.get(metric, ""), doubt]
            rows.append(
                {
                    **base,
                    "metric": metric,
                    "evaluator": name,
                    "value": float(v.mean()) if len(v) else math.nan,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(v),
                    "note": "; ".join(x for x in notes if x),
                }
            )
        rows.append(
            {
                **base,
                "metric": "landmarks_no_face",
                "evaluator": name,
                "value": n_fail,
                "n": len(fail),
            }
        )
    for name, why in p.lm_unavailable.items():
        for metric in ("landmark_nme", "pose_error", "expression_change"):
            rows.append(
                {
                    **base,
                    "metric": metric,
                    "evaluator": name,
                    "value": math.nan,
                    "n": 0,
                    "note": f"unavailable: {why}",
                }
            )
    return rows


def attacker_fell_back(evaluator: str, what: str, no_face: int, n: int, kind: str) -> str:
    """A warning (and row note) when a recognizer found no face in most images: its numbers
    then rest on reference boxes, a doubtful basis."""
    if n and no_face / n > 0.5:
        msg = f"{evaluator} found no face in {no_face}/{n} {kind} images of {what}"
        if kind == "real":
            print(f"warning: {msg}: its Recall@1 rests on reference boxes")
        return msg
    return ""


def _detector_names() -> set[str]:
    from anonbench.registry import DETECTORS

    return set(DETECTORS.names())
