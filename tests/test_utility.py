"""Face-geometry utility metrics (anonbench.metrics.utility) against brute force and synthetic
faces with known pose and expression."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from anonbench.metrics import utility as U


def _project(points3d: np.ndarray, rot: np.ndarray, t: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pinhole projection with U.camera_matrix, written out by hand."""
    cam = (rot @ points3d.T).T + t
    f = max(h, w)
    return np.stack([f * cam[:, 0] / cam[:, 2] + w / 2, f * cam[:, 1] / cam[:, 2] + h / 2], 1)


def _face68(rot: np.ndarray, h: int = 218, w: int = 178) -> np.ndarray:
    """68 landmarks whose six PnP points are the generic model seen with rotation rot; the other
    points are filled with noise (the fit must ignore them)."""
    lm = np.random.default_rng(0).uniform(0, w, (68, 2))
    lm[list(U.IBUG68.pnp)] = _project(U.GENERIC_FACE_3D, rot, np.array([5.0, -8.0, 2000.0]), h, w)
    return lm


def test_euler_round_trip_matches_scipy():
    from scipy.spatial.transform import Rotation

    for yaw, pitch, roll in [(20, -10, 5), (-35, 25, -12), (0, 0, 0), (60, -40, 30)]:
        r = U.rotation_from_euler(yaw, pitch, roll)
        # independent: intrinsic z-y-x = Rz(roll) Ry(yaw) Rx(pitch)
        ref = Rotation.from_euler("ZYX", [roll, yaw, pitch], degrees=True).as_matrix()
        np.testing.assert_allclose(r, ref, atol=1e-12)
        assert U.euler_from_rotation(r) == pytest.approx((yaw, pitch, roll), abs=1e-9)


@pytest.mark.parametrize(
    "angles", [(0, 0, 0), (20, -10, 5), (-30, 15, -8), (10, 25, 12), (-45, -5, 20)]
)
def test_pose_from_synthetic_landmarks_within_one_degree(angles):
    rot = U.rotation_from_euler(*angles)
    got = U.head_pose(_face68(rot), 218, 178)
    assert got is not None
    assert U.euler_from_rotation(got) == pytest.approx(angles, abs=1.0)
    assert U.pose_difference(rot, got).angle < 1.0


def test_pose_difference_of_known_rotations():
    a = U.rotation_from_euler(10, -5, 3)
    b = U.rotation_from_euler(25, 5, -4)
    d = U.pose_difference(a, b)
    assert (d.yaw, d.pitch, d.roll) == pytest.approx((15, 10, 7), abs=1e-9)
    # geodesic angle: the rotation angle of a^T b, from its axis-angle form
    from scipy.spatial.transform import Rotation

    ref = np.degrees(np.linalg.norm(Rotation.from_matrix(a.T @ b).as_rotvec()))
    assert d.angle == pytest.approx(ref, abs=1e-6)
    # fitted from landmarks: within a degree of the truth on each axis
    fa, fb = U.head_pose(_face68(a), 218, 178), U.head_pose(_face68(b), 218, 178)
    fd = U.pose_difference(fa, fb)
    assert (fd.yaw, fd.pitch, fd.roll) == pytest.approx((15, 10, 7), abs=1.0)
    # wrap-around: 179 and -179 degrees of roll are 2 apart
    w = U.pose_difference(U.rotation_from_euler(0, 0, 179), U.rotation_from_euler(0, 0, -179))
    assert w.roll == pytest.approx(2.0, abs=1e-9) and w.angle == pytest.approx(2.0, abs=1e-6)


def test_pose_with_mediapipe_layout_uses_its_points():
    rot = U.rotation_from_euler(15, 8, -6)
    lm = np.random.default_rng(1).uniform(0, 200, (468, 2))
    lm[list(U.MEDIAPIPE468.pnp)] = _project(
        U.GENERIC_FACE_3D, rot, np.array([0.0, 0.0, 1500.0]), 256, 256
    )
    got = U.head_pose(lm, 256, 256)
    assert U.euler_from_rotation(got) == pytest.approx((15, 8, -6), abs=1.0)


@pytest.mark.parametrize("k", [68, 468])
def test_nme_against_brute_force(k):
    rng = np.random.default_rng(k)
    ref = rng.uniform(20, 180, (5, k, 2))
    pred = ref + rng.normal(0, 3, ref.shape)
    lay = U.LAYOUTS[k]
    got = U.nme(pred, ref)
    for n in range(5):
        total = 0.0
        for i in range(k):
            total += math.sqrt(
                (pred[n, i, 0] - ref[n, i, 0]) ** 2 + (pred[n, i, 1] - ref[n, i, 1]) ** 2
            )
        a, b = lay.eye_outer
        iod = math.hypot(ref[n, a, 0] - ref[n, b, 0], ref[n, a, 1] - ref[n, b, 1])
        assert got[n] == pytest.approx(total / k / iod, rel=1e-12)
    assert U.nme(ref[0], ref[0]) == 0.0
    # a uniform shift of the whole face by the inter-ocular distance is NME 1
    iod0 = U.interocular(ref[0])
    assert U.nme(ref[0] + [iod0, 0], ref[0]) == pytest.approx(1.0)


def test_layout_points_are_the_named_parts():
    """Indices checked against the layouts' geometry on a real dlib face: eyes above the nose
    tip, the chin lowest, left points left of right ones."""
    from anonbench.data.images import read_rgb
    from anonbench.data.lfw import sample_root
    from anonbench.faces.analysis import FaceAnalyzer

    img = read_rgb(sorted((sample_root() / "images").glob("*/*.jpg"))[0])
    lm = FaceAnalyzer()(img).landmarks[0]
    nose, chin, el, er, ml, mr = (lm[i] for i in U.IBUG68.pnp)
    assert el[1] < nose[1] < ml[1] < chin[1] and er[1] < nose[1] < mr[1] < chin[1]
    assert el[0] < nose[0] < er[0] and ml[0] < mr[0]
    assert U.mouth_ratio(lm) >= 0 and 0.1 < U.eye_ratio(lm) < 0.5
    # a near-frontal LFW face: small yaw and roll
    yaw, _, roll = U.euler_from_rotation(U.head_pose(lm, *img.shape[:2]))
    assert abs(yaw) < 30 and abs(roll) < 20


def _eye(cx: float, cy: float, w: float, h: float) -> np.ndarray:
    """Six EAR points of an eye w wide and h open: corners, two upper and two lower lid points
    in EAR order (p1 above p5, p2 above p4)."""
    c0, c3 = (cx - w / 2, cy), (cx + w / 2, cy)
    up1, up2 = (cx - w / 6, cy - h / 2), (cx + w / 6, cy - h / 2)
    lo1, lo2 = (cx - w / 6, cy + h / 2), (cx + w / 6, cy + h / 2)
    # p0 corner, p1, p2 upper, p3 other corner, p4 (below p2), p5 (below p1)
    return np.array([c0, up1, up2, c3, lo2, lo1])


@pytest.mark.parametrize("layout", [U.IBUG68, U.MEDIAPIPE468])
def test_mouth_and_eye_ratios_of_synthetic_faces(layout):
    lm = np.zeros((layout.points, 2))
    for eye, cx in zip(layout.eyes, (60.0, 120.0), strict=True):
        lm[list(eye)] = _eye(cx, 80, 30, 9)
    up, lo, left, right = layout.mouth
    lm[[left, right]] = [(70, 150), (110, 150)]  # 40 wide
    lm[[up, lo]] = [(90, 145), (90, 155)]  # 10 open
    assert U.eye_ratio(lm) == pytest.approx(9 / 30)
    assert U.mouth_ratio(lm) == pytest.approx(10 / 40)
    closed = lm.copy()
    closed[[up, lo]] = [(90, 150), (90, 150)]
    for eye in layout.eyes:  # eyes half as open
        pts = closed[list(eye)]
        pts[:, 1] = 80 + (pts[:, 1] - 80) / 2
        closed[list(eye)] = pts
    ch = U.expression_change(closed, lm)
    assert ch.mouth == pytest.approx(0.25) and ch.eye == pytest.approx(4.5 / 30)
    assert ch.value == pytest.approx((0.25 + 0.15) / 2)


def test_failures_count_at_the_ceiling():
    e = np.array([0.1, 0.9, np.nan, 0.2])
    failed = np.array([False, False, False, True])
    np.testing.assert_allclose(U.with_ceiling(e, failed, 0.5), [0.1, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError):
        U.with_ceiling(e, failed[:2], 0.5)


# -- the celeba protocol's utility rows, end to end ----------------------------------------------

CELEBA_SMALL = Path(__file__).parent / "fixtures" / "celeba_small"


@pytest.fixture(scope="module")
def utility_run(tmp_path_factory):
    from anonbench.cli import main

    out = tmp_path_factory.mktemp("utility")
    argv = (
        f"run --methods original,blur17,mask --protocol celeba --data-root {CELEBA_SMALL} "
        f"--out {out} --cache-dir {out / 'cache'} --workers 1 --quiet "
        "--option detectors=dlib-hog --option recognizers= --option fid=0"
    )
    assert main(argv.split()) == 0
    return out


def _rows(out: Path, metric: str, evaluator: str) -> dict[str, dict]:
    import pandas as pd

    df = pd.read_csv(out / "results.csv")
    sel = df[(df.metric == metric) & (df.evaluator == evaluator)]
    assert sel.method.is_unique
    return {r.method: r._asdict() for r in sel.itertuples()}


@pytest.mark.parametrize("evaluator", ["dlib-68", "mediapipe"])
def test_protocol_utility_rows_original_and_mask(utility_run, evaluator):
    ceilings = {"landmark_nme": 0.5, "pose_error": 45.0, "expression_change": 0.5}
    fails = _rows(utility_run, "landmarks_no_face", evaluator)
    n = fails["original"]["n"]
    assert n > 0 and fails["original"]["value"] == 0
    # black masks: no face found on any output, so every image counts at the ceiling
    assert fails["mask"]["value"] == fails["mask"]["n"] == n
    for metric, ceiling in ceilings.items():
        rows = _rows(utility_run, metric, evaluator)
        assert rows["original"]["value"] == pytest.approx(0.0, abs=1e-9)
        assert rows["mask"]["value"] == pytest.approx(ceiling)
        assert f"counted at the ceiling {ceiling:g}" in rows["mask"]["note"]
        b = rows["blur17"]
        assert 0 < b["value"] < ceiling and b["n"] == n
        assert b["ci_low"] <= b["value"] <= b["ci_high"]


def test_protocol_dlib_nme_matches_an_independent_recomputation(utility_run):
    """blur17's dlib-68 NME recomputed from scratch: anonymize each test image, detect with
    dlib HOG directly, match IoU >= 0.5 to the original's face, 68 landmarks, NME by hand,
    failures at 0.5."""
    import json

    import dlib

    from anonbench.anonymize import anonymize_image
    from anonbench.data.images import read_rgb
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.faces.dlib_faces import dlib_model_path
    from anonbench.registry import METHODS

    info = json.loads((utility_run / "run.json").read_text())["protocol"]["details"]["celeba"]
    test_ids = set(info["test_identities"])
    lines = (CELEBA_SMALL / "identity_CelebA.txt").read_text().split("\n")
    files = sorted(f for f, i in (ln.split() for ln in lines if ln.strip()) if i in test_ids)
    hog = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    blur, analyzer = METHODS.create("blur17"), FaceAnalyzer()

    def box_iou(a, b):
        ix = max(0, min(a.right(), b.right()) - max(a.left(), b.left()))
        iy = max(0, min(a.bottom(), b.bottom()) - max(a.top(), b.top()))
        inter = ix * iy
        area = lambda r: r.width() * r.height() - (r.width() + r.height() - 1)  # noqa: E731
        union = area(a) + area(b) - inter
        return inter / union

    per_image = []
    for f in files:
        img = read_rgb(CELEBA_SMALL / "img_align_celeba" / f)
        out = anonymize_image(blur, img, analyzer(img), f)
        (orig_rect,) = hog(img, 1)  # one face per fixture image
        ref = sp(img, orig_rect)
        found = sorted(hog(out, 1), key=lambda r: -box_iou(r, orig_rect))
        if not found or box_iou(found[0], orig_rect) < 0.5:
            per_image.append(0.5)
            continue
        pred = sp(out, found[0])
        pts = [(ref.part(i).x, ref.part(i).y, pred.part(i).x, pred.part(i).y) for i in range(68)]
        mean = sum(math.hypot(px - rx, py - ry) for rx, ry, px, py in pts) / 68
        iod = math.hypot(ref.part(36).x - ref.part(45).x, ref.part(36).y - ref.part(45).y)
        per_image.append(min(mean / iod, 0.5))
    row = _rows(utility_run, "landmark_nme", "dlib-68")["blur17"]
    assert row["n"] == len(files)
    assert row["value"] == pytest.approx(sum(per_image) / len(per_image), rel=1e-6)


def test_utility_metrics_are_lower_is_better_utility_for_check():
    """`anonbench check --preset ci` treats them as utility (a plain lower-is-better number,
    like FID), and the counts of failures have no direction."""
    from anonbench.check import role
    from anonbench.registry import PROTOCOLS

    specs = {m.name: m for m in PROTOCOLS.entry("celeba").factory.metrics}
    for name in ("landmark_nme", "pose_error", "expression_change"):
        assert specs[name].higher_is_better is False and role(specs[name]) == "utility"
        assert specs[name].tolerance is not None
    assert specs["landmarks_no_face"].higher_is_better is None


def test_unavailable_landmarker_is_reported_not_substituted(tmp_path, monkeypatch):
    import pandas as pd

    from anonbench.cli import main
    from anonbench.faces import mediapipe_faces

    def missing():
        raise mediapipe_faces.MediaPipeUnavailable("mediapipe face models unavailable (test)")

    monkeypatch.setattr(mediapipe_faces, "_solutions", missing)
    argv = (
        f"run --methods blur9 --protocol celeba --data-root {CELEBA_SMALL} --out {tmp_path} "
        f"--cache-dir {tmp_path / 'cache'} --workers 1 --quiet --option detectors=dlib-hog "
        "--option recognizers= --option fid=0 --option landmarkers=mediapipe,dlib-68"
    )
    assert main(argv.split()) == 0
    df = pd.read_csv(tmp_path / "results.csv")
    for metric in ("landmark_nme", "pose_error", "expression_change"):
        mp = df[(df.metric == metric) & (df.evaluator == "mediapipe")].iloc[0]
        assert np.isnan(mp.value) and "unavailable" in mp.note
        dl = df[(df.metric == metric) & (df.evaluator == "dlib-68")].iloc[0]
        assert np.isfinite(dl.value) and dl.n > 0
