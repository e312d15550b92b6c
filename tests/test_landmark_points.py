"""`pnca-landmark-points`: the landmark attack on the drawn points (issue 24 part 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonbench.faces import landmark_points as lp

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_points_are_the_drawing_lines_and_only_what_the_drawing_holds():
    from anonbench.methods.landmark_input import LINES, crop_transform, draw_landmark_lines

    idx = lp.drawn_point_indices()
    assert len(idx) == 29 and set(idx) == {i for pair in LINES for i in pair}
    from PIL import Image

    from anonbench.faces.analysis import FaceAnalyzer

    folder = Path(__file__).parent / "fixtures" / "celeba_small" / "img_align_celeba"
    image = np.asarray(Image.open(sorted(folder.glob("*.jpg"))[0]).convert("RGB"))
    lm = np.asarray(FaceAnalyzer()(image).landmarks[0], np.float64)
    pts = lp.drawn_points(lm)
    # the truncated crop points, centred: every one is a drawn pixel of the drawing
    t = crop_transform(lm)
    whole = np.trunc(t.points_to_crop(lm))[idx]
    assert np.allclose(pts + whole.mean(0), whole, atol=1e-4)
    drawing = draw_landmark_lines(t.points_to_crop(lm))
    assert all(drawing[int(y), int(x)] == 255 for x, y in whole)


def _synthetic(n_ids: int, per_id: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (n_ids, 58))
    x = np.concatenate([c + rng.normal(0, 1, (per_id, 58)) for c in centres]).astype(np.float32)
    return x, [f"id{i}" for i in range(n_ids) for _ in range(per_id)]


def _recall1(e: np.ndarray, y: list[str]) -> float:
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    return float(np.mean([y[j] == y[i] for i, j in enumerate(s.argmax(1))]))


def test_training_separates_identities_it_never_saw():
    x, y = _synthetic(20, 8, 0)
    cfg = lp.PointsConfig(epochs=15, hidden=64, dim=16)
    emb = lp.PointsEmbedder(lp.train_points(x, y, cfg))
    xt, yt = _synthetic(10, 6, 1)  # other identities: the embedding must generalise
    e = emb(xt)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert _recall1(e, yt) > 0.8
    with pytest.raises(Exception, match="2 train identities"):
        lp.train_points(x[:3], ["a"] * 3, cfg)


def test_cached_training_is_reused_and_a_damaged_entry_retrained(tmp_path):
    x, y = _synthetic(4, 4, 2)
    cfg = lp.PointsConfig(epochs=2, hidden=16, dim=8)
    a, key = lp._cached(tmp_path, x, y, cfg)
    (f,) = (tmp_path / "landmark_points").glob("*.pt")
    stamp = f.stat().st_mtime_ns
    b, key2 = lp._cached(tmp_path, x, y, cfg)
    assert key == key2 and f.stat().st_mtime_ns == stamp
    assert np.allclose(a(x), b(x))
    f.write_bytes(b"not a checkpoint")
    c, _ = lp._cached(tmp_path, x, y, cfg)
    assert np.allclose(a(x), c(x), atol=1e-6)  # same seed, same net


def test_attacker_flags_images_without_a_face_at_the_box(tmp_path):
    att = lp.LandmarkPointsAttacker(cache_dir=str(tmp_path), epochs=1)
    blank = np.zeros((218, 178, 3), np.uint8)
    x, y = _synthetic(3, 2, 3)
    att.net, att._digest = lp._cached(tmp_path, x, y, lp.PointsConfig(epochs=1, hidden=16))
    emb, missing = att.embed([blank, blank], (40.0, 60.0, 140.0, 170.0))
    assert missing.tolist() == [True, True] and not emb.any()
    assert att.version.startswith("pnca-landmark-points/")
