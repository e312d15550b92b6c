"""The face-region SSIM/PSNR scorer on synthetic passes (arrays in memory, no files)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from anonbench.api import RunContext
from anonbench.data.records import ImageRecord
from anonbench.scorers.base import Pass
from anonbench.scorers.similarity import PSNR_CAP, SimilarityScorer, face_crop


def _pass(label, images, boxes) -> Pass:
    recs = [ImageRecord(k, Path(f"/none/{k}"), f"id{i}") for i, k in enumerate(images)]
    frozen = {k: (b, False) for k, b in boxes.items()}
    return Pass(label, recs, {}, frozen, loader=images.__getitem__)


def test_ssim_and_psnr_of_the_face_box(tmp_path):
    rng = np.random.default_rng(1)
    real = {k: rng.integers(0, 256, (40, 30, 3), dtype=np.uint8) for k in ("a", "b", "c")}
    out = {k: v.copy() for k, v in real.items()}
    box = (5.2, 6.0, 25.0, 30.5)  # rounded outwards: rows 6..30, columns 5..24
    noise = rng.integers(-20, 21, (25, 20, 3))
    out["b"][6:31, 5:25] = np.clip(out["b"][6:31, 5:25] + noise, 0, 255).astype(np.uint8)
    out["b"][0, 0] = 0  # outside the box: ignored
    out["a"][0:3, 0:3] = 255  # outside the box: "a" stays identical in it
    boxes = {"a": box, "b": box, "c": (1.0, 1.0, 2.5, 2.5)}  # c: 2 px, left out
    ctx = RunContext(data=SimpleNamespace(label="s"), out_dir=str(tmp_path), cache_dir="", seed=1)
    s = SimilarityScorer()
    s.prepare(_pass("real", real, boxes), None, ctx)
    ssim, psnr = s.score(_pass("m", out, boxes), ctx)
    assert face_crop(real["a"], box).shape == (25, 20, 3)
    diff = real["b"][6:31, 5:25].astype(np.float64) - out["b"][6:31, 5:25]
    want_psnr = 10 * math.log10(255**2 / np.mean(diff**2))
    items = {it["key"]: it for it in s.per_item()}
    assert set(items) == {"a", "b"}
    assert items["a"]["face_ssim"] == pytest.approx(1.0) and items["a"]["face_psnr"] == PSNR_CAP
    assert items["b"]["face_psnr"] == pytest.approx(want_psnr, rel=1e-9)
    assert 0 < items["b"]["face_ssim"] < 0.99
    assert psnr.n == 2 and psnr.value == pytest.approx((PSNR_CAP + want_psnr) / 2)
    assert ssim.note.startswith("1 images left out")


def test_celeba_similarity_rows_and_per_image_files(tmp_path, one_torch_thread):
    """similarity=1 adds face_ssim and face_psnr rows: unchanged for `original`, lower for a
    blur; every run writes per-image scores per method and evaluator."""
    import pandas as pd

    from anonbench.cli import main

    data = Path(__file__).parent / "fixtures" / "celeba_small"
    argv = (
        f"run --methods original,blur17 --protocol celeba --data-root {data} --out {tmp_path / 'r'}"
        f" --cache-dir {tmp_path / 'c'} --workers 1 --quiet --option detectors=dlib-hog"
        " --option recognizers=dlib-resnet --option landmarkers= --option fid=0"
        " --option max_per_identity=1 --option similarity=1"
    )
    assert main(argv.split()) == 0
    df = pd.read_csv(tmp_path / "r" / "results.csv").set_index(["method", "metric"])
    assert df.loc[("original", "face_ssim"), "value"] == pytest.approx(1.0)
    assert df.loc[("original", "face_psnr"), "value"] == PSNR_CAP
    assert df.loc[("blur17", "face_ssim"), "value"] < 0.9
    assert df.loc[("blur17", "face_psnr"), "value"] < 40
    assert df.loc[("blur17", "face_psnr"), "n"] == 3
    # per-image files, one per method and evaluator; their means are the results' values
    ev = pd.read_csv(tmp_path / "r" / "scores" / "celeba" / "blur17" / "dlib-resnet.csv")
    assert list(ev.columns) == ["key", "identity", "recall_at_1"] and len(ev) == 3
    rows = pd.read_csv(tmp_path / "r" / "results.csv").set_index(["method", "metric", "evaluator"])
    want = rows.loc[("blur17", "recall_at_1", "dlib-resnet"), "value"]
    assert ev.recall_at_1.mean() == pytest.approx(want)
    box = pd.read_csv(tmp_path / "r" / "scores" / "celeba" / "blur17" / "face-box.csv")
    assert box.face_psnr.mean() == pytest.approx(df.loc[("blur17", "face_psnr"), "value"], rel=1e-5)
    hog = pd.read_csv(tmp_path / "r" / "scores" / "celeba" / "original" / "dlib-hog.csv")
    assert {"faces_missed", "detection_rate"} <= set(hog.columns)
