"""The celeba scorers on synthetic passes (no images on disk, no dlib), MTEB-style: each
scorer gets a hand-made real pass and output pass whose answer is known."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from anonbench.api import RunContext
from anonbench.data.records import ImageRecord
from anonbench.errors import AnonbenchError
from anonbench.metrics.result import MetricResult
from anonbench.metrics.retrieval import bootstrap_ci
from anonbench.produce import ImageRef
from anonbench.scorers.base import ImageAnalysis, Needs, Pass, Scorer, SetFeatures

BOX = (10.0, 10.0, 50.0, 50.0)
FAR = (60.0, 60.0, 90.0, 90.0)


def _ctx(tmp_path: Path, seed: int = 0) -> RunContext:
    return RunContext(
        data=SimpleNamespace(label="synthetic"),
        out_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        seed=seed,
        quiet=True,
    )


def _records(n: int, n_ids: int = 2) -> list[ImageRecord]:
    return [ImageRecord(f"k{i}", Path(f"/none/k{i}.jpg"), f"id{i % n_ids}") for i in range(n)]


def _pass(label, records, dets=None, embs=None, fell_back=(), **kw) -> Pass:
    """A pass whose image i has detections dets[i] (name -> boxes) and embeddings embs[i]."""
    images = {
        r.key: ImageAnalysis(
            None,
            {n: np.array(b, np.float32).reshape(-1, 4) for n, b in (dets or [{}] * 99)[i].items()},
            (embs or [{}] * 99)[i],
        )
        for i, r in enumerate(records)
    }
    boxes = {r.key: (BOX, r.key in fell_back) for r in records}
    return Pass(label, records, images, boxes, **kw)


# -- detection ------------------------------------------------------------------------------


def test_detection_rate_known_answer(tmp_path):
    from anonbench.scorers.detection import DetectionScorer

    recs = _records(4)
    # the detector finds the face on originals 0-2, none on original 3 (left out)
    real = _pass("real", recs, [{"d": [BOX]}, {"d": [BOX]}, {"d": [BOX, FAR]}, {"d": [FAR]}])
    # outputs: 0 found again, 1 moved away (missed), 2 found, 3 irrelevant
    out = _pass("m", recs, [{"d": [BOX]}, {"d": [FAR]}, {"d": [BOX]}, {"d": [BOX]}])
    s = DetectionScorer(["d"], {"gone": "weights not on disk"})
    assert s.needs() == Needs(detectors=("d",))
    ctx = _ctx(tmp_path, seed=4)
    s.prepare(real, None, ctx)
    rate, missing, gone = s.score(out, ctx)
    vals = np.array([100.0, 0.0, 100.0])
    assert rate == MetricResult(
        "detection_rate", "d", 200 / 3, 3, ci=bootstrap_ci(vals, seed=4), note=None
    )
    assert (missing.metric, missing.value, missing.n) == ("original_not_detected", 1, 4)
    assert gone == MetricResult.unavailable("detection_rate", "gone", "weights not on disk")
    assert [it["detection_rate"] for it in s.per_item()] == [100.0, 0.0, 100.0]


def test_detection_no_original_face_at_all_is_nan_with_a_note(tmp_path):
    from anonbench.scorers.detection import DetectionScorer

    recs = _records(2)
    real = _pass("real", recs, [{"d": []}, {"d": [FAR]}])
    out = _pass("m", recs, [{"d": [BOX]}, {"d": [BOX]}], note="most originals without a face")
    s = DetectionScorer(["d"])
    s.prepare(real, None, _ctx(tmp_path))
    rate = s.score(out, _ctx(tmp_path))[0]
    assert math.isnan(rate.value) and rate.n == 0
    assert (
        rate.note == "d found no original face at the reference face; most originals without a face"
    )


# -- retrieval -------------------------------------------------------------------------------


def _unit(*v: float) -> np.ndarray:
    a = np.array(v, np.float32)
    return a / np.linalg.norm(a)


# two identities, two images each: id0 near (1, 0), id1 near (0, 1)
GALLERY = [_unit(1, 0.1), _unit(0.1, 1), _unit(1, 0.2), _unit(0.2, 1)]


def test_retrieval_known_answer(tmp_path):
    from anonbench.scorers.retrieval import RetrievalScorer

    recs = _records(4)
    real = _pass("real", recs, embs=[{"e": (g, False)} for g in GALLERY])
    # queries 0 and 1 keep their identity; 2 and 3 look like the other identity; 3 no face
    q = [GALLERY[0], GALLERY[1], GALLERY[1], GALLERY[0]]
    out = _pass("m", recs, embs=[{"e": (v, i == 3)} for i, v in enumerate(q)])
    s = RetrievalScorer(["e"], {"gone": "no weights"})
    s.prepare(real, None, _ctx(tmp_path))
    recall, no_face, gone, chance = s.score(out, _ctx(tmp_path, seed=2))
    hits = np.array([100.0, 100.0, 0.0, 0.0])
    ids = [r.identity for r in recs]
    assert recall.value == 50.0 and recall.n == 4
    assert recall.ci == bootstrap_ci(hits, groups=ids, seed=2)
    assert (no_face.metric, no_face.value, no_face.n) == ("embedder_no_face", 1, 4)
    assert gone.evaluator == "gone" and math.isnan(gone.value)
    assert (chance.evaluator, chance.value, chance.n) == ("chance", 50.0, 2)
    assert [it["recall_at_1"] for it in s.per_item()] == list(hits)


class _Attacker:
    """A trained attacker with a fixed checkpoint: embeds an image as its first two pixels."""

    name, version, dim, training = "fake-att", "1", 2, "real"
    checkpoint, classes = "fake.pt", ["train-only"]

    def embed(self, images, boxes):
        e = np.stack([_unit(*im[0, :2, 0].astype(np.float64) + 1e-3) for im in images])
        return e.astype(np.float32), np.zeros(len(images), bool)


class _Ref:
    def __init__(self, v: np.ndarray) -> None:
        self.img = np.zeros((4, 4, 3), np.uint8)
        self.img[0, :2, 0] = np.round(v * 200)

    def load(self) -> np.ndarray:
        return self.img


def test_trained_retrieval_and_its_reversal_wrapper(tmp_path):
    from anonbench.scorers.retrieval import TrainedRetrievalScorer
    from anonbench.scorers.reversal import ReversalScorer

    recs = _records(4)
    real = _pass("real", recs, refs={r.key: _Ref(g) for r, g in zip(recs, GALLERY, strict=True)})
    q = [GALLERY[0], GALLERY[1], GALLERY[1], GALLERY[1]]  # 3 hits of 4
    out = _pass("m", recs, refs={r.key: _Ref(v) for r, v in zip(recs, q, strict=True)})
    out.method = SimpleNamespace(name="m")
    split = SimpleNamespace(test_ids=["id0", "id1"], train=[])
    s = TrainedRetrievalScorer({"fake-att": _Attacker()})
    ctx = _ctx(tmp_path)
    s.prepare(real, split, ctx)
    (r,) = s.score(out, ctx)
    assert (r.evaluator, r.value, r.n) == ("fake-att", 75.0, 4)
    # the wrapper: the same scorer on restored outputs (RestoredRef over these refs is not
    # loaded here: the fake attacker is asked through the pass's refs, so patch them back)
    w = ReversalScorer(s, ["wiener"])
    assert w.needs() == Needs()
    w.prepare(real, split, ctx)  # s is prepared already: no refit
    import anonbench.scorers.passes as P

    def restored_pass(ctx, out, attack, needs):
        return Pass(f"{out.label} +{attack}", out.records, out.images, out.boxes, refs=out.refs)

    orig = P.restored_pass
    P.restored_pass = restored_pass
    try:
        (rr,) = w.score(out, ctx)
    finally:
        P.restored_pass = orig
    assert (rr.evaluator, rr.value, rr.n) == ("fake-att+wiener", 75.0, 4)
    assert (
        rr.note == "reversal attack wiener before embedding, Gaussian PSF width estimated per image"
    )
    assert {it["evaluator"] for it in w.per_item()} == {"fake-att+wiener"}


def test_trained_checkpoint_on_test_identities_is_refused(tmp_path):
    from anonbench.scorers.retrieval import TrainedRetrievalScorer

    att = _Attacker()
    att.classes = ["id1"]
    s = TrainedRetrievalScorer({"fake-att": att})
    split = SimpleNamespace(test_ids=["id0", "id1"], train=[])
    with pytest.raises(AnonbenchError, match="trained on 1 test identities"):
        s.prepare(_pass("real", []), split, _ctx(tmp_path))


def test_reversal_drops_chance_and_unavailable_rows(tmp_path):
    from anonbench.scorers.reversal import ReversalScorer

    class Inner(Scorer):
        name = "inner"

        def score(self, out, ctx):
            return [
                MetricResult("recall_at_1", "e", 10.0, len(out.records), note="x"),
                MetricResult.count("embedder_no_face", "e", 1, len(out.records)),
                MetricResult.unavailable("recall_at_1", "gone", "no weights"),
                MetricResult("recall_at_1", "chance", 50.0, 2),
            ]

    recs = _records(2)
    out = _pass("m", recs, refs={r.key: ImageRef(None, "/none") for r in recs}, note="doubt")
    out.method = SimpleNamespace(name="m")
    inner = Inner()
    inner.real = None  # prepared
    rows = ReversalScorer(inner, ["wiener", "richardson-lucy"]).score(out, _ctx(tmp_path))
    assert [(r.metric, r.evaluator) for r in rows] == [
        ("recall_at_1", "e+wiener"),
        ("embedder_no_face", "e+wiener"),
        ("recall_at_1", "e+richardson-lucy"),
        ("embedder_no_face", "e+richardson-lucy"),
    ]
    assert rows[0].note.endswith("per image; doubt") and rows[1].note == "restored by wiener"
    empty = _pass("m", [])
    assert ReversalScorer(inner, ["wiener"]).score(empty, _ctx(tmp_path)) == []


# -- leaks, realism --------------------------------------------------------------------------


@pytest.mark.parametrize("external", [False, True])
def test_leaks_counts_the_store_misses(tmp_path, external):
    from anonbench.scorers.leaks import LeaksScorer

    recs = _records(3)
    store = SimpleNamespace(external=external, missed=lambda rs: [r.key for r in rs][1:2])
    (r,) = LeaksScorer().score(_pass("m", recs, store=store), _ctx(tmp_path))
    assert (r.metric, r.evaluator, r.value, r.n) == ("faces_missed", "dlib-hog", 1, 3)
    assert (r.note is not None) == external


def test_realism_unavailable_features_give_unavailable_rows(tmp_path):
    from anonbench.scorers.realism import RealismScorer

    def broken(keys):
        raise AnonbenchError("no Inception weights")

    feats = {"inception": SetFeatures(broken)}
    recs = _records(3)
    s = RealismScorer(kid=True)
    assert s.needs() == Needs(features=("inception",))
    s.prepare(_pass("real", recs, features=feats), None, _ctx(tmp_path))
    rows = s.score(_pass("m", recs, features=feats), _ctx(tmp_path))
    assert [(r.metric, r.n, r.note) for r in rows] == [
        ("fid", 0, "unavailable: no Inception weights"),
        ("kid", 0, "unavailable: no Inception weights"),
    ]


# -- utility ---------------------------------------------------------------------------------


class _Landmarker:
    """68 points: the box's corners pattern, shifted by the image's first pixel value."""

    name, version, detector = "fake-lm", "1", "d"

    def landmarks(self, image, box):
        rng = np.random.default_rng(0)
        base = rng.uniform(0, 40, (68, 2)) + np.array(box[:2])
        return (base + float(image[0, 0, 0])).astype(np.float32)


def test_utility_known_answer(tmp_path):
    from anonbench.metrics import utility as U
    from anonbench.metrics.catalog import NME_CEILING
    from anonbench.scorers.utility import UtilityScorer

    recs = _records(4)
    real_imgs = {r.key: np.zeros((100, 100, 3), np.uint8) for r in recs}
    out_imgs = {r.key: np.zeros((100, 100, 3), np.uint8) for r in recs}
    out_imgs["k1"][0, 0, 0] = 3  # landmarks 3 px off on both axes
    # original 3: no face over the reference (left out); output 2: face gone (failure)
    real = _pass("real", recs, [{"d": [BOX]}] * 3 + [{"d": [FAR]}], loader=real_imgs.get)
    out = _pass(
        "m", recs, [{"d": [BOX]}, {"d": [BOX]}, {"d": []}, {"d": [BOX]}], loader=out_imgs.get
    )
    s = UtilityScorer({"fake-lm": _Landmarker()}, {"mediapipe": "not installed"})
    assert s.needs() == Needs(detectors=("d",))
    ctx = _ctx(tmp_path)
    s.prepare(real, None, ctx)
    rows = {(r.metric, r.evaluator): r for r in s.score(out, ctx)}
    nme = rows[("landmark_nme", "fake-lm")]
    lm = _Landmarker().landmarks(real_imgs["k0"], BOX)
    want = [0.0, min(NME_CEILING, float(U.nme(lm + 3, lm))), NME_CEILING]  # nme: test_utility
    assert nme.n == 3 and nme.value == pytest.approx(np.mean(want), rel=1e-6)
    assert "1 originals without a d face or landmarks left out" in nme.note
    fails = rows[("landmarks_no_face", "fake-lm")]
    assert (fails.value, fails.n) == (1, 3)
    assert math.isnan(rows[("pose_error", "mediapipe")].value)
    items = s.per_item()
    assert [it["failed"] for it in items] == [False, False, True]
    assert items[2]["landmark_nme"] == NME_CEILING


def test_adaptive_attacker_is_refitted_per_method_on_its_outputs(tmp_path, monkeypatch):
    """The adaptive scorer fits a fresh attacker per output pass on the train identities plus
    the method's outputs of them, then embeds gallery and queries with it."""
    import anonbench.scorers.attackers as A
    from anonbench.scorers.adaptive import NOTE, AdaptiveAttackScorer

    recs = _records(4)
    train = [ImageRecord(f"t{i}", Path(f"/none/t{i}.jpg"), f"tr{i}") for i in range(2)]
    fits = []

    def fit(ctx, att, records, extra=()):
        fits.append((att, [r.key for r in records], [(k, ref, lab) for k, ref, _, lab in extra]))

    monkeypatch.setattr(A, "trained_attacker", lambda name, ctx, **kw: _Attacker())
    monkeypatch.setattr(A, "fit_attacker", fit)
    org = SimpleNamespace(
        readable=lambda rs: list(rs), reference=lambda key: ((0.0, 0.0, 4.0, 4.0), False)
    )
    ctx = _ctx(tmp_path)
    ctx.originals = org
    real = _pass("real", recs, refs={r.key: _Ref(g) for r, g in zip(recs, GALLERY, strict=True)})
    s = AdaptiveAttackScorer(["pnca-adaptive"])
    # the train identities are produced only when there is an attacker to refit
    assert s.needs_train and not AdaptiveAttackScorer([]).needs_train
    s.prepare(real, SimpleNamespace(train=train), ctx)
    for name, q, want in (("m1", GALLERY, 100.0), ("m2", GALLERY[::-1], 0.0)):
        store = SimpleNamespace(ref=lambda r, name=name: f"{name}:{r.key}")
        refs = {r.key: _Ref(v) for r, v in zip(recs, q, strict=True)}
        out = _pass(name, recs, refs=refs, store=store)
        (r,) = s.score(out, ctx)
        assert (r.evaluator, r.value, r.note) == ("pnca-adaptive", want, NOTE)
        _, keys, extra = fits[-1]
        assert keys == ["t0", "t1"]
        assert extra == [("t0", f"{name}:t0", "tr0"), ("t1", f"{name}:t1", "tr1")]
    assert len(fits) == 2 and fits[0][0] is not fits[1][0]  # a fresh attacker per method
