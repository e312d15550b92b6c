"""Reference boxes are frozen at prepare (issue 21's fallback-box bug).

A test original without a detected face gets the fallback box: the median reference box over
the analysed originals. It used to be recomputed whenever new images were analysed, and the
celeba protocol analyses the train identities (to fit its trained attacker) after embedding
the gallery but before embedding the queries: the same original got one box as gallery and
another as query, and run.json recorded the first."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from anonbench.cli import main
from anonbench.data.records import ImageRecord
from anonbench.evaluate import Analysis, Originals

CELEBA_SMALL = Path(__file__).parent / "fixtures" / "celeba_small"
NO_FACE = "007220.jpg"  # a test identity (7212) at seed 0, test_fraction 0.5
TRAIN_IDS = {"7211", "7214", "7216"}


def _dataset(root: Path) -> None:
    """celeba_small with one test original replaced by a flat grey image (no face) and the
    train identities' faces moved 24 px right and down (so their boxes move the median)."""
    shutil.copytree(CELEBA_SMALL, root)
    img = root / "img_align_celeba"
    ids = dict(line.split() for line in (root / "identity_CelebA.txt").read_text().splitlines())
    for name, identity in ids.items():
        a = np.asarray(Image.open(img / name).convert("RGB"))
        if name == NO_FACE:
            a = np.full_like(a, 128)
        elif identity in TRAIN_IDS:
            b = np.zeros_like(a)
            b[24:, 24:] = a[:-24, :-24]
            a = b
        Image.fromarray(a).save(img / name, quality=95)


def test_an_original_without_a_face_keeps_one_box_as_gallery_and_query(
    tmp_path, monkeypatch, one_torch_thread
):
    import anonbench.evaluate as ev
    import anonbench.faces.cached as fc

    root = tmp_path / "data"
    _dataset(root)
    seen: dict[str, set] = defaultdict(set)
    evaluate_images, cached_embeddings = ev.evaluate_images, fc.cached_embeddings

    def spy_evaluate(items, *a, **kw):
        items = list(items)
        seen["evaluate_images"] |= {tuple(b) for k, _, b in items if k.endswith(NO_FACE)}
        return evaluate_images(items, *a, **kw)

    def spy_embeddings(cache, embedder, images, boxes, digests=None):
        for im, b in zip(images, boxes, strict=True):
            if np.ptp(im) <= 2:  # the flat grey original (or its unchanged output)
                seen[embedder.name].add(tuple(float(v) for v in b))
        return cached_embeddings(cache, embedder, images, boxes, digests)

    monkeypatch.setattr(ev, "evaluate_images", spy_evaluate)
    monkeypatch.setattr(fc, "cached_embeddings", spy_embeddings)
    out = tmp_path / "run"
    argv = (
        f"run --methods original --protocol celeba --data-root {root} --out {out}"
        f" --cache-dir {tmp_path / 'cache'} --workers 1 --device cpu --seed 0 --quiet"
        " --option detectors=dlib-hog --option recognizers=dlib-resnet,pnca"
        " --option landmarkers= --option fid=0 --option kid=0 --option pnca_epochs=1"
        " --option test_fraction=0.5 --option max_per_identity=0 --option reversal=none"
    )
    assert main(argv.split()) == 0
    info = json.loads((out / "run.json").read_text())["protocol"]["details"]["celeba"]
    assert info["originals_without_face"] == 1
    h, w = np.asarray(Image.open(root / "img_align_celeba" / NO_FACE)).shape[:2]
    rel = info["fallback_box_relative"]
    recorded = tuple(round(v * s, 1) for v, s in zip(rel, (w, h, w, h), strict=True))
    assert set(seen) >= {"evaluate_images", "pnca"}
    for where, boxes in seen.items():
        assert len(boxes) == 1, (where, boxes)
        assert np.allclose(next(iter(boxes)), recorded, atol=0.1), (where, boxes, recorded)


def _analysis(box: tuple[float, ...] | None) -> Analysis:
    boxes = np.array([box] if box else np.zeros((0, 4)), np.float64).reshape(-1, 4)
    return Analysis(boxes, np.ones(len(boxes)), np.zeros((len(boxes), 68, 2)), (100, 100))


class _Executor:
    """Analyses every new original as one face at (40, 40, 90, 90)."""

    distributed = False

    def map(self, fn, builder, chunks, **kw):
        for i, chunk in enumerate(chunks):
            yield i, [(k, _analysis((40, 40, 90, 90))) for k, _ in chunk]


def test_freeze_fixes_the_fallback_box(tmp_path):
    """Unit level: after freeze(), analysing more originals no longer moves the fallback."""
    org = Originals(str(tmp_path), quiet=True, executor=_Executor())
    org.analyses = {"a": _analysis((10, 10, 50, 50)), "none": _analysis(None)}
    before = org.reference("none")
    assert before == ((10.0, 10.0, 50.0, 50.0), True)
    org.analyze([ImageRecord("b", Path("b"), "x"), ImageRecord("c", Path("c"), "x")], "train")
    moved = org.reference("none")  # not frozen: the median moves with the new originals
    assert moved == ((40.0, 40.0, 90.0, 90.0), True)
    org.freeze()
    org.analyze([ImageRecord(k, Path(k), "y") for k in "defg"], "more train")
    assert org.reference("none") == moved
