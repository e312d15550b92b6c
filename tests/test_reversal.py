"""Reversal attacks: deconvolution of a known Gaussian blur raises PSNR against the sharp image;
the PSF matches OpenCV's blur; the width estimator finds the blur; RestoredRef restores."""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.ndimage import convolve

from anonbench.data.images import read_rgb
from anonbench.errors import AnonbenchError
from anonbench.metrics import reversal as R
from anonbench.produce import ImageRef

FIXTURES = Path(__file__).parent / "fixtures"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _face() -> np.ndarray:
    f = sorted(glob.glob(str(FIXTURES / "lfw_tiny" / "**" / "*.jpg"), recursive=True))[0]
    return read_rgb(f)


def _checkerboard(n: int = 96, cell: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    board = (((yy // cell) + (xx // cell)) % 2 * 160 + 48).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def _blur(img: np.ndarray, k: int) -> np.ndarray:
    return cv2.GaussianBlur(img, (k, k), 0, borderType=cv2.BORDER_REFLECT_101)


def test_psf_is_opencvs_blur():
    assert R.opencv_sigma(17) == pytest.approx(2.9)
    assert R.opencv_sigma(9) == pytest.approx(1.7)
    img = _face()[..., 0].astype(np.float64)
    for k in (9, 17):
        mine = convolve(img, R.gaussian_psf(k, 0), mode="mirror")
        theirs = cv2.GaussianBlur(img, (k, k), 0, borderType=cv2.BORDER_REFLECT_101)
        assert np.abs(mine - theirs).max() < 1e-6


@pytest.mark.parametrize("attack", R.ATTACKS)
@pytest.mark.parametrize("k", [9, 17])
@pytest.mark.parametrize("which", ["face", "checkerboard"])
def test_deconvolution_raises_psnr(attack, k, which):
    sharp = _face() if which == "face" else _checkerboard()
    blurred = _blur(sharp, k)
    restored = R.restore(blurred, attack, k, 0.0)
    assert restored.dtype == np.uint8 and restored.shape == sharp.shape
    gain = _psnr(restored, sharp) - _psnr(blurred, sharp)
    assert gain > 1.5, (attack, k, which, gain)


@pytest.mark.parametrize("k", [9, 17])
def test_estimated_sigma_is_near_the_blur(k):
    face = _face()
    est = R.estimate_sigma(_blur(face, k))
    assert est == pytest.approx(R.opencv_sigma(k), rel=0.3)
    assert est > R.estimate_sigma(face) + 0.5  # blurred reads as wider than the original
    # with the estimate, Wiener still helps
    blurred = _blur(face, k)
    assert _psnr(R.restore(blurred, "wiener"), face) > _psnr(blurred, face) + 1.0


def test_restored_ref_applies_the_attack(tmp_path):
    from anonbench.methods.classic import GaussianBlur, Pixelate

    face = _face()
    path = tmp_path / "b.png"
    cv2.imwrite(str(path), cv2.cvtColor(_blur(face, 17), cv2.COLOR_RGB2BGR))
    ref = ImageRef(str(path), str(path))
    box = (60.0, 60.0, 190.0, 190.0)
    rr = R.restored(ref, "wiener", GaussianBlur(17), box)
    assert (rr.kernel, rr.sigma) == (17, 0.0)  # the method's own config: OpenCV's default
    out = rr.load()
    assert np.array_equal(out, R.restore(_blur(face, 17), "wiener", 17, 0.0))
    assert _psnr(out, face) > _psnr(ref.load(), face) + 1.5
    est = R.restored(ref, "richardson-lucy", Pixelate(8), box)
    assert est.kernel == 0  # not a blur method: the width is estimated
    assert np.array_equal(est.load(), R.restore(ref.load(), "richardson-lucy", 0, 0.0, box))
    import pickle

    assert pickle.loads(pickle.dumps(rr)) == rr  # travels to worker processes


def test_parse_reversal():
    assert R.parse_reversal("none") == []
    assert R.parse_reversal("all") == ["wiener", "richardson-lucy"]
    assert R.parse_reversal("Wiener") == ["wiener"]
    with pytest.raises(AnonbenchError, match="expected one of"):
        R.parse_reversal("deblur")


def test_lfw_reversal_rows_end_to_end(tmp_path):
    """`--option reversal=wiener` adds TAR, accuracy, AUC, EER and no-face rows under
    '<recognizer>+wiener'; a wrong value stops the run with exit 2."""
    import pandas as pd

    from anonbench.cli import main

    base = (
        f"run --methods blur17 --protocol lfw --data lfw:{FIXTURES / 'lfw_tiny'} --quiet "
        f"--workers 1 --cache-dir {tmp_path / 'c'}"
    ).split()
    assert main([*base, "--out", str(tmp_path / "bad"), "--option", "reversal=deblur"]) == 2
    assert main([*base, "--out", str(tmp_path / "o"), "--option", "reversal=wiener"]) == 0
    df = pd.read_csv(tmp_path / "o" / "results.csv")
    rev = df[df["evaluator"] == "dlib-resnet+wiener"]
    assert sorted(rev["metric"]) == ["accuracy", "auc", "eer", "embedder_no_face", "tar_far_1e-3"]
    plain = df[df["evaluator"] == "dlib-resnet"].set_index("metric")
    r = rev.set_index("metric")
    assert r.loc["tar_far_1e-3", "n"] == plain.loc["tar_far_1e-3", "n"]  # the same pairs
    assert "known Gaussian PSF (kernel 17" in r.loc["tar_far_1e-3", "note"]
