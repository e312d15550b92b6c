"""KID against a direct double-loop computation of the unbiased polynomial-kernel MMD^2."""

from __future__ import annotations

import numpy as np
import pytest

from anonbench.metrics.kid import kid_from_features


def _k(x: np.ndarray, y: np.ndarray) -> float:
    return (float(sum(a * b for a, b in zip(x, y, strict=True))) / len(x) + 1.0) ** 3


def _mmd2_loops(x: np.ndarray, y: np.ndarray) -> float:
    """The estimator written out term by term (i != j within a set; all pairs across)."""
    m = len(x)
    xx = sum(_k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(_k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(_k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_equals_direct_formula_on_whole_sets():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8))
    y = rng.normal(0.3, 1.2, size=(50, 8))
    res = kid_from_features(x, y)
    assert res.kid == pytest.approx(_mmd2_loops(x, y), abs=1e-6)
    assert res.std == 0.0 and res.subset_size == 50 and res.n1 == res.n2 == 50
    assert res.kid > 0.01  # different distributions: clearly positive


def test_kid_subsets_follow_torch_fidelity_sampling():
    """Subsets drawn with one RandomState(seed): first set, then second, per subset; mean and
    population std of the per-subset estimates."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 8))
    y = rng.normal(0.5, 1.0, size=(30, 8))
    res = kid_from_features(x, y, subsets=6, subset_size=12, seed=7)
    r = np.random.RandomState(7)
    vals = []
    for _ in range(6):
        a = x[r.choice(40, 12, replace=False)]
        b = y[r.choice(30, 12, replace=False)]
        vals.append(_mmd2_loops(a, b))
    assert res.kid == pytest.approx(float(np.mean(vals)), abs=1e-6)
    assert res.std == pytest.approx(float(np.std(vals)), abs=1e-6)
    assert res.std > 0 and res.subset_size == 12
    # another seed draws other subsets
    assert kid_from_features(x, y, subsets=6, subset_size=12, seed=8).kid != res.kid


def test_subset_size_capped_by_the_smaller_set():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    res = kid_from_features(x, y, subsets=3)
    assert res.subset_size == 20 and res.std > 0  # x's subsets differ
    assert any("subsets of 20" in n for n in res.notes)


def test_identical_sets_give_about_zero():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 8))
    shifted = kid_from_features(x, x + 0.5).kid
    same = kid_from_features(x, x.copy()).kid
    assert shifted > 0.05
    # the cross term keeps its diagonal, so identical sets give -2/m (mean k(x,x) - mean
    # k(x,y)): O(1/m), a few percent of a 0.5 shift at m = 400
    assert abs(same) < 0.05 * shifted
    assert kid_from_features(x[:100], x[:100].copy()).kid < same < 0  # shrinks with m
    # independent draws of one distribution: also near zero (the estimator is unbiased)
    assert abs(kid_from_features(x, rng.normal(size=(400, 8))).kid) < 0.05 * shifted


def test_too_few_images_is_an_error():
    with pytest.raises(ValueError):
        kid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


def test_celeba_fid_and_kid_rows_share_one_feature_extraction(tmp_path, monkeypatch):
    """The celeba protocol's FID and KID rows come from one extraction per image set (cached),
    equal the metric functions on those features, and kid=0 drops only KID."""
    from types import SimpleNamespace

    import cv2

    import anonbench.metrics.fid as fidmod
    from anonbench.api import RunContext
    from anonbench.data.records import ImageRecord
    from anonbench.metrics.fid import fid_from_features
    from anonbench.scorers.base import Pass
    from anonbench.scorers.passes import FeatureBank
    from anonbench.scorers.realism import RealismScorer

    calls = []

    class FakeInception:
        version, weights_source = "fake", "fake-weights"

        def __init__(self, device="cpu", batch_size=32):
            pass

        def features(self, images, on_batch=None):
            imgs = list(images)
            calls.append(len(imgs))
            return np.stack(
                [np.r_[im.reshape(-1, 3).mean(0), im.reshape(-1, 3).std(0)] for im in imgs]
            ).astype(np.float64)

    monkeypatch.setattr(fidmod, "FIDFeatureExtractor", FakeInception)
    rng = np.random.default_rng(5)
    records, anon = [], {}
    for i in range(12):
        real = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(real, cv2.COLOR_RGB2BGR))
        records.append(ImageRecord(f"{i}.png", path, f"id{i % 3}"))
        anon[f"{i}.png"] = (real // 2).astype(np.uint8)
    paths = {r.key: r.path for r in records}

    def ctx(**opts):
        return RunContext(
            data=SimpleNamespace(label="t"),
            out_dir=str(tmp_path),
            cache_dir=str(tmp_path / "cache"),
            seed=3,
            quiet=True,
            options={"fid": True, "kid": True, **opts},
        )

    def score(kid: bool) -> list[dict]:
        """The realism scorer on a real and an output pass sharing one feature bank."""
        bank = FeatureBank(ctx())

        def loader(key):
            return cv2.cvtColor(cv2.imread(str(paths[key])), cv2.COLOR_BGR2RGB)

        real = Pass("real", records, {}, {}, features=bank.for_loader(loader, ["inception"]))
        feats = bank.for_loader(anon.__getitem__, ["inception"])
        out = Pass("m", records, {}, {}, features=feats)
        scorer = RealismScorer(kid=kid)
        scorer.prepare(real, None, ctx())
        return [r.to_row() for r in scorer.score(out, ctx())]

    rows = score(kid=True)
    assert calls == [12, 12]  # real, anonymized: once each
    by = {r["metric"]: r for r in rows}
    real_f = FakeInception().features(cv2.imread(str(r.path))[..., ::-1] for r in records)
    anon_f = FakeInception().features(anon[r.key] for r in records)
    assert by["fid"]["value"] == pytest.approx(fid_from_features(anon_f, real_f).fid, rel=1e-9)
    want = kid_from_features(anon_f, real_f, seed=3)
    assert by["kid"]["value"] == pytest.approx(want.kid, abs=1e-9)
    assert by["kid"]["std"] == 0.0 and by["kid"]["n"] == 12 and want.kid > 0
    calls.clear()
    rows = score(kid=False)
    assert [r["metric"] for r in rows] == ["fid"] and calls == []  # features from the cache


@pytest.mark.parametrize("quiet", [False, True])
def test_feature_extraction_shows_a_progress_bar_unless_quiet(quiet, tmp_path, monkeypatch, capsys):
    """Inception features of thousands of images take minutes on a CPU core: a bar, not a
    silent wait (and nothing under --quiet)."""
    from types import SimpleNamespace

    from anonbench.api import RunContext
    from anonbench.metrics import fid as fidmod
    from anonbench.scorers.passes import FeatureBank

    class FakeInception:
        version, weights_source = "fake", "fake-weights"

        def __init__(self, device="cpu", batch_size=32):
            pass

        def features(self, images, on_batch=None):
            out = np.stack([np.full(4, float(im.mean())) for im in images])
            if on_batch is not None:  # one batch: the bar moves when it is done
                on_batch(len(out))
            return out

    monkeypatch.setattr(fidmod, "FIDFeatureExtractor", FakeInception)
    ctx = RunContext(
        data=SimpleNamespace(label="t"),
        out_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        seed=0,
        quiet=quiet,
    )
    imgs = {f"k{i}": np.full((8, 8, 3), i, np.uint8) for i in range(5)}
    feats = FeatureBank(ctx).for_loader(imgs.__getitem__, ["inception"], "real images")
    got = feats["inception"].compute(list(imgs))
    assert got[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # every image, in order
    err = capsys.readouterr().err
    if quiet:
        assert err == ""
    else:
        assert "FID features: real images" in err and "5/5" in err
