"""Verification and face-kept scorers on synthetic passes (no images, no dlib)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from anonbench.api import RunContext
from anonbench.data.records import ImageRecord
from anonbench.metrics.verification import equal_error_rate, kfold_verification, roc_auc
from anonbench.scorers.base import ImageAnalysis, Pass
from anonbench.scorers.face_kept import FaceKeptScorer
from anonbench.scorers.verification import VerificationPair, VerificationScorer

EMB = "emb"


def _vec(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)], np.float32)


def _pass(label: str, angles: dict[str, float], errors=(), no_face=()) -> Pass:
    """A pass of 2-d unit embeddings at the given angles (cosine = cos of the difference)."""
    recs = [ImageRecord(k, Path(k), k.split("_")[0]) for k in angles]
    images = {k: ImageAnalysis(embs={EMB: (_vec(a), k in no_face)}) for k, a in angles.items()}
    images.update({k: ImageAnalysis(error="unreadable") for k in errors})
    boxes = {k: ((0.0, 0.0, 1.0, 1.0), False) for k in angles}
    return Pass(label, [r for r in recs if r.key not in errors], images, boxes)


def _setup(n_folds: int = 3, per_fold: int = 4, seed: int = 0):
    """Pairs over n_folds folds; matched pairs close in angle, mismatched ones far (noisy)."""
    rng = np.random.default_rng(seed)
    refs, probes, pairs = {}, {}, []
    for f in range(n_folds):
        for i in range(per_fold):
            label = int(i < per_fold // 2)
            r, p = f"r{f}_{i}", f"p{f}_{i}"
            refs[r] = rng.uniform(0, 3)
            probes[p] = refs[r] + rng.uniform(0, 0.6 if label else 2.5)
            pairs.append(VerificationPair(r, p, f, i, label))
    return refs, probes, pairs


def test_scores_and_results_match_the_metric_functions():
    refs, probes, pairs = _setup()
    sc = VerificationScorer(EMB, pairs)
    sc.prepare(_pass("real", refs), None, RunContext(data=None, out_dir=""))
    res = {r.metric: r for r in sc.score(_pass("m", probes), RunContext(data=None, out_dir=""))}
    want = np.array(
        [[p.fold, p.index, p.label, math.cos(probes[p.probe] - refs[p.reference])] for p in pairs]
    )
    np.testing.assert_allclose(sc.scores, want, rtol=1e-6)
    kf = kfold_verification(want[:, 3], want[:, 2], want[:, 0])
    assert res["tar_far_1e-3"].value == pytest.approx(kf.tar_mean_std()[0])
    assert res["tar_far_1e-3"].std == pytest.approx(kf.tar_mean_std()[1])
    assert res["accuracy"].value == pytest.approx(kf.accuracy_mean_std()[0])
    assert res["auc"].value == pytest.approx(roc_auc(want[:, 3], want[:, 2]))
    assert res["eer"].value == pytest.approx(equal_error_rate(want[:, 3], want[:, 2]))
    assert {r.n for r in res.values()} == {len(pairs)}
    assert res["accuracy"].note == "3 folds" and res["auc"].evaluator == EMB
    items = sc.per_item()
    assert [(d["key"], d["label"]) for d in items] == [
        (f"{p.reference}|{p.probe}", p.label) for p in pairs
    ]


def test_a_failed_image_in_either_pass_drops_its_pairs():
    refs, probes, pairs = _setup()
    # r0_0 unreadable as a reference; p1_1 unreadable as an output; r2_0 failed as an output too
    real = _pass("real", refs, errors={"r0_0"})
    out = _pass("m", {**probes, "r2_0": 0.0}, errors={"p1_1", "r2_0"})
    sc = VerificationScorer(EMB, pairs, evaluator="emb+attack")
    sc.prepare(real, None, RunContext(data=None, out_dir=""))
    res = sc.score(out, RunContext(data=None, out_dir=""))
    left = {(int(f), int(i)) for f, i in sc.scores[:, :2]}
    assert left == {(p.fold, p.index) for p in pairs} - {(0, 0), (1, 1), (2, 0)}
    assert {r.evaluator for r in res} == {"emb+attack"} and {r.n for r in res} == {len(left)}


def test_unscorable_pairs_give_nan_with_the_reason():
    refs, probes, pairs = _setup(n_folds=1)
    ctx = RunContext(data=None, out_dir="")
    sc = VerificationScorer(EMB, [p for p in pairs if p.label == 1])  # no mismatched pair
    sc.prepare(_pass("real", refs), None, ctx)
    res = {r.metric: r for r in sc.score(_pass("m", probes), ctx)}
    assert all(math.isnan(r.value) for r in res.values()) and set(res) == set(
        ("tar_far_1e-3", "accuracy", "auc", "eer")
    )
    assert "cannot be computed" in res["accuracy"].note
    sc = VerificationScorer(EMB, pairs)
    sc.prepare(_pass("real", {}), None, ctx)
    res = {r.metric: r for r in sc.score(_pass("m", probes), ctx)}
    assert res["tar_far_1e-3"].note == "no readable pairs" and res["tar_far_1e-3"].n == 0
    # one fold: thresholds in-sample, said in the note with the pass's doubt
    sc = VerificationScorer(EMB, pairs)
    sc.prepare(_pass("real", refs), None, ctx)
    out = _pass("m", probes)
    out.note = "doubtful boxes"
    res = {r.metric: r for r in sc.score(out, ctx)}
    assert res["tar_far_1e-3"].note.startswith("single fold") and "doubtful" in res["eer"].note


def test_face_kept_counts_the_outputs_without_a_face():
    out = _pass("m", {f"a_{i}": 0.0 for i in range(10)}, no_face={"a_1", "a_7"})
    sc = FaceKeptScorer(EMB)
    res = {r.metric: r for r in sc.score(out, RunContext(data=None, out_dir="", seed=3))}
    assert res["face_kept"].value == pytest.approx(80.0) and res["face_kept"].n == 10
    lo, hi = res["face_kept"].ci
    assert lo <= 80.0 <= hi and hi <= 100.0
    assert (res["embedder_no_face"].value, res["embedder_no_face"].n) == (2, 10)
    assert [d["face_kept"] for d in sc.per_item()].count(0.0) == 2
    empty = FaceKeptScorer(EMB).score(_pass("m", {}), RunContext(data=None, out_dir=""))
    assert math.isnan(empty[0].value) and empty[1].n == 0
