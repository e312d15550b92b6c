"""Learned reversal's restorer (issue 24 part 3) on synthetic pairs: no faces, no dlib."""

from __future__ import annotations

import numpy as np
import pytest

from anonbench.errors import AnonbenchError
from anonbench.faces import restoration as rs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pairs(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Smooth random images and a known 'anonymizer' (darken by 60 levels) to undo."""
    import cv2

    rng = np.random.default_rng(seed)
    orig = np.stack(
        [
            cv2.resize(rng.integers(60, 256, (4, 4, 3)).astype(np.uint8), (size, size))
            for _ in range(n)
        ]
    )
    anon = np.clip(orig.astype(int) - 60, 0, 255).astype(np.uint8)
    return anon, orig, [f"id{i % 6}" for i in range(n)]


def test_a_fresh_net_is_the_identity_and_restore_touches_only_the_square():
    r = rs.Restorer(
        {
            "format": "anonbench-restorer",
            "config": {**rs.asdict(rs.RestoreConfig(size=32, width=4))},
            "state": rs.build_unet(4).state_dict(),
        }
    )
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (60, 50, 3)).astype(np.uint8)
    assert np.array_equal(r.restore(img, (10.0, 10.0, 30.0, 30.0)), img)  # zero residual


def test_training_learns_to_undo_a_known_method_and_records_its_curve():
    anon, orig, labels = _pairs(48)
    cfg = rs.RestoreConfig(size=32, width=8, batch=8, lr=2e-3, max_steps=150, eval_every=50)
    ckpt = rs.train_restorer(anon, orig, labels, cfg)
    curve = ckpt["curve"]
    assert [p["step"] for p in curve] == [0, 50, 100, 150]
    first, last = curve[0], curve[-1]
    # step 0 is the identity: its error is the unrestored error, computed independently
    assert first["val_l1"] == pytest.approx(first["val_l1_unrestored"], abs=1e-6)
    assert last["val_l1"] < 0.5 * last["val_l1_unrestored"]
    assert ckpt["val_pairs"] > 0 and ckpt["train_pairs"] + ckpt["val_pairs"] == 48


def test_restore_pastes_the_residual_back_at_full_size():
    anon, orig, labels = _pairs(48)
    cfg = rs.RestoreConfig(
        size=32, factor=2.0, width=8, batch=8, lr=2e-3, max_steps=150, eval_every=150
    )
    r = rs.Restorer(rs.train_restorer(anon, orig, labels, cfg))
    # a 64-px version of a held pair inside a larger image: the square is 2 x 32 = 64 px
    import cv2

    big_o = cv2.resize(orig[0], (64, 64))
    big_a = np.clip(big_o.astype(int) - 60, 0, 255).astype(np.uint8)
    img = np.zeros((100, 100, 3), np.uint8)
    img[18:82, 18:82] = big_a
    out = r.restore(img, (34.0, 34.0, 66.0, 66.0))
    before = np.abs(big_a.astype(int) - big_o).mean()
    after = np.abs(out[18:82, 18:82].astype(int) - big_o).mean()
    assert after < 0.6 * before
    assert np.array_equal(out[:10], img[:10])  # outside the square: untouched


def test_cache_reuses_training_and_refuses_bad_input(tmp_path):
    anon, orig, labels = _pairs(12)
    cfg = rs.RestoreConfig(size=32, width=4, batch=4, max_steps=3, eval_every=3)
    a = rs.cached_restorer(tmp_path, "m/1", anon, orig, labels, cfg)
    (f,) = (tmp_path / "restorer").glob("*.pt")
    stamp = f.stat().st_mtime_ns
    b = rs.cached_restorer(tmp_path, "m/1", anon, orig, labels, cfg)
    assert f.stat().st_mtime_ns == stamp and a.curve == b.curve
    rs.cached_restorer(tmp_path, "m/2", anon, orig, labels, cfg)  # another method config
    assert len(list((tmp_path / "restorer").glob("*.pt"))) == 2
    with pytest.raises(AnonbenchError, match="pairs"):
        rs.train_restorer(anon[:1], orig[:1], labels[:1], cfg)
