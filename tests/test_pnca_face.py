"""`pnca-face`: the face crop on any geometry, the shipped checkpoint, its training identities,
the protocol's overlap refusal, and its Recall@1 against a brute-force computation."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anonbench.cli import main
from anonbench.faces import pnca_face as pf

SMALL = Path(__file__).parent / "fixtures" / "celeba_small"
LFW = Path(pf.__file__).parents[1] / "data" / "sample" / "lfw" / "images"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the crop -----------------------------------------------------------------------------------


def _pattern(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth colour pattern of coordinates in units of the box side (0, 0 = box centre)."""
    r = 128 + 100 * np.sin(3 * u)
    g = 128 + 100 * np.cos(4 * v)
    b = 128 + 60 * np.sin(2 * u + 3 * v)
    return np.stack([r, g, b], -1)


def _render(h: int, w: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """An h x w image of the pattern placed relative to box (its centre and larger side)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1])
    y, x = np.mgrid[0:h, 0:w] + 0.5
    return np.round(_pattern((x - cx) / side, (y - cy) / side)).astype(np.uint8)


def test_crop_follows_the_box_on_any_image_size():
    """The crop is the square of FACE_FACTOR x the box's larger side around its centre, at
    112 px, wherever the box is and whatever the image size."""
    i = (np.arange(pf.INPUT_SIZE) + 0.5) / pf.INPUT_SIZE - 0.5  # crop pixel centres
    v, u = np.meshgrid(i * pf.FACE_FACTOR, i * pf.FACE_FACTOR, indexing="ij")
    expected = _pattern(u, v)
    geometries = [
        (218, 178, (46.0, 86.0, 135.0, 176.0)),  # aligned CelebA, dlib HOG box
        (480, 640, (300.0, 120.0, 500.0, 330.0)),  # a large photo, face off-centre
        (160, 120, (20.0, 30.0, 100.0, 110.0)),  # a small image
    ]
    crops = []
    for h, w, box in geometries:
        crop = pf.face_crop_112(_render(h, w, box), box)
        assert crop.shape == (pf.INPUT_SIZE, pf.INPUT_SIZE, 3) and crop.dtype == np.uint8
        # resampling (area / bilinear, integer square) costs a few grey levels, not more
        assert np.abs(crop.astype(float) - expected).mean() < 4, (h, w, box)
        crops.append(crop)
    # a wrong factor or centre would be far off: the test can fail
    wrong = pf.face_crop(_render(218, 178, geometries[0][2]), geometries[0][2], 112, 2.0)
    assert np.abs(wrong.astype(float) - expected).mean() > 20


def test_crop_leaving_the_image_is_edge_replicated_and_batched_crops_agree():
    img = np.random.default_rng(0).integers(0, 256, (112, 112, 3), np.uint8)
    box = (10.0, 10.0, 102.0, 102.0)  # a tight crop: 1.25 x 92 px reaches past the image
    crop = pf.face_crop_112(img, box)
    assert crop.shape == (112, 112, 3)
    both = pf.face_crops_112([img, img[:, ::-1].copy()], [box, box])
    assert np.array_equal(both[0], crop)
    assert pf.face_crops_112([], None).shape == (0, 112, 112, 3)


# --- the shipped checkpoint ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> pf.FaceProxyNCAAttacker:
    return pf.FaceProxyNCAAttacker(batch_size=8)


def test_shipped_checkpoint_is_small_and_matches_its_model_card(shipped):
    files = pf.checkpoint_files(pf.WEIGHTS)
    assert files and all(f.stat().st_size < 16 << 20 for f in files)
    raw = b"".join(f.read_bytes() for f in files)
    assert len(raw) <= 24_000_000
    sha = hashlib.sha256(raw).hexdigest()
    assert sha == shipped.sha256
    card = (pf.WEIGHTS.parent / "MODEL_CARD.md").read_text()
    assert sha in card


def test_shipped_checkpoint_embeds_faces_to_distinct_unit_vectors(shipped):
    from anonbench.data.images import read_rgb

    paths = sorted(LFW.glob("*/*.jpg"))[:2]
    images = [read_rgb(p) for p in paths]
    # LFW sample images are 250 x 250 with the face in the middle
    emb, fell_back = shipped.embed(images, (75.0, 80.0, 175.0, 185.0))
    assert emb.shape == (2, shipped.dim) and np.isfinite(emb).all()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert not fell_back.any()
    assert float(emb[0] @ emb[1]) < 0.99  # not a constant vector


def test_shipped_identities_are_the_default_celeba_train_split(shipped):
    """The checkpoint names its training identities and the held-out ones; its celeba
    identities (bare; v2 adds LFW people as `lfw:<Name>`) and the held-out ones split (seed
    0, half held out) exactly into them, so the celeba protocol's default test identities
    were never trained on, under any name."""
    import torch  # noqa: F401  (the checkpoint is read by torch)

    from anonbench.data.splits import identity_split
    from anonbench.scorers.attackers import seen_identities

    ckpt, _ = pf.load_checkpoint()
    train, test = list(ckpt["classes"]), list(ckpt["test_identities"])
    celeba = [c for c in train if not c.startswith("lfw:")]
    assert test and not seen_identities(train, test)
    assert identity_split(celeba + test, 0, 0.5) == (sorted(celeba), sorted(test))
    assert shipped.classes == train


# --- in the protocol ----------------------------------------------------------------------------


def _random_checkpoint(path: Path, classes: list[str]) -> Path:
    """An untrained ResNet-18 exported like the shipped one, with the given 'train' classes."""
    import torch

    torch.manual_seed(0)
    sd = pf.build_net().state_dict()
    meta = {"config": {"crop": pf.CROP_VERSION, "dim": 128}, "classes": classes}
    pf.export(sd, {**meta, "test_identities": []}, path)
    return path


def _run(out: Path, capsys, method: str = "original", *extra: str) -> tuple[int, str]:
    argv = (
        f"run --methods {method} --protocol celeba --data-root {SMALL} --out {out} "
        f"--cache-dir {out / 'cache'} --workers 1 --quiet --option detectors=dlib-hog "
        "--option recognizers=pnca-face --option fid=0 --option landmarkers="
    )
    capsys.readouterr()
    rc = main([*argv.split(), *extra])
    return rc, capsys.readouterr().err


def test_protocol_refuses_a_checkpoint_trained_on_test_identities(tmp_path, monkeypatch, capsys):
    from anonbench.data.splits import identity_split

    ids = ["7211", "7212", "7213", "7214", "7215", "7216"]  # celeba_small's identities
    _, test_ids = identity_split(ids, 0, 0.5)
    ck = _random_checkpoint(tmp_path / "w" / "net.pt", [test_ids[0], "9999"])
    monkeypatch.setattr(pf, "WEIGHTS", ck)
    rc, err = _run(tmp_path / "o", capsys)
    assert rc != 0
    assert re.search(r"was trained on 1 test identities of this split", err), err


def test_seen_identities_match_with_or_without_the_source_prefix():
    from anonbench.scorers.attackers import seen_identities

    classes = ["7211", "lfw:George_W_Bush", "lfw:Abel_Pacheco"]
    assert seen_identities(classes, {"7211", "7300"}) == {"7211"}
    assert seen_identities(classes, ["Abel_Pacheco", "Zico"]) == {"Abel_Pacheco"}
    assert seen_identities(classes, ["lfw:George_W_Bush"]) == {"lfw:George_W_Bush"}
    assert seen_identities(["7211"], ["Abel_Pacheco"]) == set()
    assert seen_identities(["x:7211", "vgg:7211"], ["7211"]) == set()  # unknown sources


def test_lfw_refuses_a_recognizer_trained_on_its_people(tmp_path, monkeypatch, capsys):
    """pnca-face v2 learned LFW people: verifying those pairs with it would be inflated, so
    the lfw protocol refuses it, one line, before scoring."""
    lfw = Path(__file__).parent / "fixtures" / "lfw_tiny"
    person = (lfw / "pairs.txt").read_text().splitlines()[1].split()[0]
    ck = _random_checkpoint(tmp_path / "w" / "net.pt", [f"lfw:{person}", "9999"])
    monkeypatch.setattr(pf, "WEIGHTS", ck)
    argv = (
        f"run --methods blur9 --protocol lfw --data-root {lfw} --out {tmp_path / 'o'} "
        f"--cache-dir {tmp_path / 'cache'} --workers 1 --quiet --embedder pnca-face"
    )
    capsys.readouterr()
    rc = main(argv.split())
    err = capsys.readouterr().err
    assert rc == 2, err
    assert re.search(
        rf"pnca-face \(checkpoint .*\) was trained on 1 of the \d+ people in these "
        rf"pairs, e\.g\. {person}: .*choose another --embedder",
        err,
    )
    ck2 = _random_checkpoint(tmp_path / "w2" / "net.pt", ["lfw:Nobody_In_The_Pairs", "9999"])
    monkeypatch.setattr(pf, "WEIGHTS", ck2)
    assert main(argv.replace("/o ", "/o2 ").split()) == 0


def _test_faces() -> tuple[list, list[np.ndarray], list]:
    """celeba_small's default test records, their images and reference boxes."""
    from anonbench.data.celeba import load_celeba
    from anonbench.data.images import read_rgb
    from anonbench.data.splits import identity_split
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.faces.pnca import centre_face_box

    records = load_celeba(SMALL).records
    _, test_ids = identity_split([r.identity for r in records], 0, 0.5)
    test = [r for r in records if r.identity in set(test_ids)]
    analyzer = FaceAnalyzer()
    images = [read_rgb(r.path) for r in test]
    return test, images, [centre_face_box(im, analyzer)[0] for im in images]


def _brute_force_recall(q: np.ndarray, g: np.ndarray, test: list) -> float:
    """Recall@1 %: query i against every real test image but its own source (image i)."""
    hits = []
    for i in range(len(test)):
        d = [np.inf if j == i else float(np.sum((q[i] - g[j]) ** 2)) for j in range(len(test))]
        hits.append(test[int(np.argmin(d))].identity == test[i].identity)
    return 100 * float(np.mean(hits))


def _row(out: Path, evaluator: str) -> pd.Series:
    df = pd.read_csv(out / "results.csv")
    return df.query(f"metric == 'recall_at_1' and evaluator == '{evaluator}'").iloc[0]


def test_protocol_recall_equals_brute_force(tmp_path, monkeypatch, capsys):
    ck = _random_checkpoint(tmp_path / "w" / "net.pt", ["9998", "9999"])
    monkeypatch.setattr(pf, "WEIGHTS", ck)
    rc, err = _run(tmp_path / "o", capsys)
    assert rc == 0, err
    row = _row(tmp_path / "o", "pnca-face")

    test, images, boxes = _test_faces()
    emb, _ = pf.FaceProxyNCAAttacker(checkpoint=str(ck)).embed(images, boxes)
    # `original`: each query is its own real image, which is left out of the gallery
    assert row["n"] == len(test) == 9
    assert row["value"] == pytest.approx(_brute_force_recall(emb, emb, test))


def test_protocol_reversal_rows_equal_brute_force(tmp_path, monkeypatch, capsys):
    """`reversal=wiener` on blur17: pnca-face (a fixed network) embeds each stored output after
    Wiener deconvolution with blur17's known kernel; Recall@1 against the real test images."""
    import json

    from anonbench.data.images import read_rgb
    from anonbench.metrics import reversal as R

    ck = _random_checkpoint(tmp_path / "w" / "net.pt", ["9998", "9999"])
    monkeypatch.setattr(pf, "WEIGHTS", ck)
    rc, err = _run(tmp_path / "o", capsys, "blur17", "--option", "reversal=wiener")
    assert rc == 0, err
    row = _row(tmp_path / "o", "pnca-face+wiener")
    assert "known Gaussian PSF (kernel 17" in row["note"]

    test, real, boxes = _test_faces()
    (manifest,) = (tmp_path / "o" / "cache").rglob("manifest.json")
    stored = json.loads(manifest.read_text())["images"]
    attacker = pf.FaceProxyNCAAttacker(checkpoint=str(ck))
    psf = R.gaussian_psf(17, 0)
    queries = [R.wiener(read_rgb(manifest.parent / stored[r.key]["file"]), psf) for r in test]
    q, _ = attacker.embed(queries, boxes)
    g, _ = attacker.embed(real, boxes)
    assert row["n"] == len(test) == 9
    assert row["value"] == pytest.approx(_brute_force_recall(q, g, test))


# --- the trainer (benchmarks/train_pnca_face.py) -----------------------------------------------


def test_trainer_learns_and_a_warm_restart_starts_from_its_checkpoint():
    import torch

    from anonbench.errors import AnonbenchError

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (8, pf.TRAIN_SIZE, pf.TRAIN_SIZE, 3), dtype=np.uint8)
    labels = ["a", "b"] * 4
    saved: dict = {}

    def keep(epoch, net, proxies, loss):
        saved.update(state_dict={k: v.clone() for k, v in net.state_dict().items()})
        saved.update(proxies=proxies.detach().clone(), epoch=epoch + 1)

    first = pf.train_face_net(crops, labels, epochs=1, batch_size=4, on_epoch=keep)
    assert first["steps"] == 2 and np.isfinite(first["losses"]).all()
    torch.manual_seed(0)  # the trainer's own seeding: the same initial network
    initial = pf.build_net().state_dict()
    assert any(not torch.equal(v, initial[k]) for k, v in first["state_dict"].items())
    # lr 0: a warm restart keeps the checkpoint's weights (only BatchNorm statistics move)
    again = pf.train_face_net(
        crops, labels, epochs=1, batch_size=4, lr=0.0, proxy_lr=0.0, init=saved
    )
    for k, v in again["state_dict"].items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, saved["state_dict"][k]), k
    with pytest.raises(AnonbenchError, match="proxies"):
        pf.train_face_net(crops, ["a", "b", "c", "d"] * 2, epochs=1, batch_size=4, init=saved)
    # fewer crops than one batch: one clear error (it divided by zero steps per epoch)
    with pytest.raises(AnonbenchError, match="8 crops, batch size 16"):
        pf.train_face_net(crops, labels, epochs=1, batch_size=16)
