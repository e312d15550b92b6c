"""The landmark-attack and faceswap scorers, and the composed identity-protocol flow, on
synthetic passes (no images, no dlib), MTEB-style: each answer is known."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from anonbench.api import RunContext
from anonbench.data.records import ImageRecord
from anonbench.metrics.result import MetricResult
from anonbench.metrics.retrieval import bootstrap_ci
from anonbench.scorers.base import ImageAnalysis, Needs, Pass, Scorer

BOX = (10.0, 10.0, 50.0, 50.0)
A, B = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)


def _ctx(tmp_path: Path) -> RunContext:
    return RunContext(data=SimpleNamespace(label="synthetic"), out_dir=str(tmp_path), quiet=True)


def _records(ids: list[str]) -> list[ImageRecord]:
    return [ImageRecord(f"k{i}", Path(f"/none/k{i}.jpg"), x) for i, x in enumerate(ids)]


def _pass(label, records, refs=None, embs=None, **kw) -> Pass:
    images = {r.key: ImageAnalysis(None, {}, (embs or {}).get(r.key, {})) for r in records}
    boxes = {r.key: (BOX, False) for r in records}
    return Pass(label, records, images, boxes, refs=refs or {}, **kw)


def _fake_attacker(monkeypatch):
    """A landmark attacker whose embedding of an item is its ref's `v`; `no` = no landmarks."""
    import anonbench.scorers.attackers as att

    def embed(ctx, attacker, items, desc=None):
        refs = [ref for _, ref, _ in items]
        return np.stack([r.v for r in refs]), np.array([r.no for r in refs])

    fits = []
    monkeypatch.setattr(att, "embed_trained", embed)
    monkeypatch.setattr(att, "fit_attacker", lambda ctx, a, records: fits.append(records))
    return SimpleNamespace(name="pnca-landmarks"), fits


def _ref(v, no=False):
    return SimpleNamespace(v=v, no=no)


def test_landmark_attack_keeps_real_images_with_landmarks_and_counts_misses(tmp_path, monkeypatch):
    from anonbench.scorers.landmark_attack import NOTE, LandmarkAttackScorer

    attacker, fits = _fake_attacker(monkeypatch)
    recs = _records(["id0", "id1", "id0", "id1"])
    # the real k3 has no landmarks: not in the gallery, not scored
    refs = {"k0": _ref(A), "k1": _ref(B), "k2": _ref(A), "k3": _ref(B, no=True)}
    real = _pass("real", recs, refs)
    s = LandmarkAttackScorer(attacker)
    ctx = _ctx(tmp_path)
    s.prepare(real, SimpleNamespace(train=["t"]), ctx)
    assert fits == [["t"]] and s.kept == ["k0", "k1", "k2"]
    # k0's output looks like k2 (same identity: a hit, its own source left out), k1's like
    # an id0 image (a miss), k2's output has no landmarks (a miss, counted)
    out_refs = {"k0": _ref(A), "k1": _ref(A), "k2": _ref(B, no=True)}
    out = _pass("m", recs[:3], out_refs)
    recall, missing, chance = s.score(out, ctx)
    hits = np.array([100.0, 0.0, 0.0])
    ci = bootstrap_ci(hits, groups=["id0", "id1", "id0"], seed=0)
    assert recall == MetricResult("recall_at_1", "pnca-landmarks", 100 / 3, 3, ci=ci, note=NOTE)
    assert missing == MetricResult("landmarks_missing", "dlib-68", 1.0, 3)
    assert chance == MetricResult("recall_at_1", "chance", 50.0, 2)
    by_ev = {(it["evaluator"], it["key"]): it for it in s.per_item()}
    assert by_ev["pnca-landmarks", "k0"]["recall_at_1"] == 100.0
    assert by_ev["dlib-68", "k2"]["landmarks_missing"] == 1


def test_target_retrieval_labels_queries_with_their_target(tmp_path):
    from anonbench.scorers.target_retrieval import NOTE, TargetRetrievalScorer

    gallery = _records(["t0", "t1"])
    g = _pass("real", gallery, embs={"k0": {"e": (A, False)}, "k1": {"e": (B, False)}})
    test = [ImageRecord(f"q{i}", Path(f"/none/q{i}.jpg"), "src") for i in range(3)]
    # q0 looks like its target t0 (hit), q1 like t0 but was given t1 (miss), q2 missed
    embs = {"q0": {"e": (A, False)}, "q1": {"e": (A, False)}, "q2": {"e": (B, False)}}
    entries = {"q0": {"missed": False}, "q1": {"missed": False}, "q2": {"missed": True}}
    out = _pass("m", test, embs=embs, store=SimpleNamespace(entries=entries))
    s = TargetRetrievalScorer(["e"], {"q0": "t0", "q1": "t1", "q2": "t1"}, ["t0", "t1"])
    assert s.needs() == Needs(embedders=("e",))
    ctx = _ctx(tmp_path)
    s.prepare(g, None, ctx)
    rec, chance = s.score(out, ctx)
    ci = bootstrap_ci(np.array([100.0, 0.0, 0.0]), groups=["t0", "t1", "t1"], seed=0)
    assert rec == MetricResult("target_recall_at_1", "e", 100 / 3, 3, ci=ci, note=NOTE)
    assert chance == MetricResult("target_recall_at_1", "chance", 50.0, 2)


def test_target_retrieval_fits_a_trained_attacker_on_the_train_identities(tmp_path, monkeypatch):
    """pnca (a trained attacker) in faceswap's recognizers: fitted on the split's train
    identities at prepare, gallery and queries embedded by it (it crashed unfitted); a
    recognizer that cannot run gives an unavailable row."""
    from anonbench.scorers.target_retrieval import NOTE, TargetRetrievalScorer

    attacker, fits = _fake_attacker(monkeypatch)
    gallery = _records(["t0", "t1"])
    g = _pass("real", gallery, refs={"k0": _ref(A), "k1": _ref(B)})
    test = [ImageRecord(f"q{i}", Path(f"/none/q{i}.jpg"), "src") for i in range(2)]
    out_refs = {"q0": _ref(B), "q1": _ref(B)}  # both look like t1
    entries = {"q0": {"missed": False}, "q1": {"missed": False}}
    out = _pass("m", test, out_refs, store=SimpleNamespace(entries=entries))
    s = TargetRetrievalScorer(
        [], {"q0": "t0", "q1": "t1"}, ["t0", "t1"], {"pnca": attacker}, {"fn": "no weights"}
    )
    assert s.needs() == Needs(embedders=())
    ctx = _ctx(tmp_path)
    s.prepare(g, SimpleNamespace(train=["train-records"]), ctx)
    assert fits == [["train-records"]]
    rec, unavailable, chance = s.score(out, ctx)
    ci = bootstrap_ci(np.array([0.0, 100.0]), groups=["t0", "t1"], seed=0)
    assert rec == MetricResult("target_recall_at_1", "pnca", 50.0, 2, ci=ci, note=NOTE)
    assert unavailable == MetricResult.unavailable("target_recall_at_1", "fn", "no weights")
    assert chance == MetricResult("target_recall_at_1", "chance", 50.0, 2)


class _Narrow(Scorer):
    """Can score only k0 and k2; needs the train identities when told to."""

    name = "narrow"

    def __init__(self, train: bool) -> None:
        self.needs_train = train

    def prepare(self, real, split, ctx):
        self.real, self.kept = real, ["k0", "k2"]


@pytest.mark.parametrize("train", [False, True])
def test_composed_protocol_narrows_to_kept_and_adds_train_when_needed(tmp_path, monkeypatch, train):
    import anonbench.scorers.composed as C
    import anonbench.scorers.passes as P
    from anonbench.splits import Split

    recs = _records(["a", "b", "a", "b"])
    train_recs = [ImageRecord("t0", Path("/none/t0.jpg"), "x")]
    split = Split(train=train_recs, test=recs, train_ids=["x"], test_ids=["a", "b"], info={})
    monkeypatch.setattr(C, "load_split", lambda ctx: split)
    monkeypatch.setattr(C, "analyse_test", lambda ctx, split, warn: list(split.test))
    monkeypatch.setattr(P, "frozen_boxes", lambda ctx, rs: {r.key: (BOX, False) for r in rs})
    monkeypatch.setattr(P, "real_pass", lambda ctx, rs, needs, boxes, desc, f: _pass("real", rs))

    class Proto(C.IdentityProtocol):
        name = "p"

        def scorers(self, ctx, split):
            return [_Narrow(train)]

    proto = Proto()
    got = [r.key for r in proto.records(SimpleNamespace(), _ctx(tmp_path))]
    assert got == ["k0", "k2"] + (["t0"] if train else [])
    assert proto._prepare(None).real.keys == ["k0", "k2"]
