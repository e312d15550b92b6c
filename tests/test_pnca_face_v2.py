"""pnca-face v2 (issue 24): LFW listing, the celeba-test match filter, the prepared file (never
a test identity), the epoch plan, exact resume, SIGTERM-free stop, quality and export."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from anonbench.errors import AnonbenchError
from anonbench.faces import pnca_face as pf
from anonbench.faces import pnca_face_data as pd_
from anonbench.faces import pnca_face_train as pt

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lfw(root: Path, counts: dict[str, int]) -> Path:
    import cv2

    for name, n in counts.items():
        d = root / "images_deepfunneled" / name
        d.mkdir(parents=True)
        for i in range(n):
            img = np.full((40, 40, 3), 10 * (i + 1), np.uint8)
            cv2.imwrite(str(d / f"{name}_{i + 1:04d}.png"), img)  # png: exact pixel values
    return root


def test_lfw_people_min_images_and_missing_folder(tmp_path: Path) -> None:
    root = _lfw(tmp_path / "lfw", {"A_One": 1, "B_Two": 2, "C_Three": 3})
    people = pd_.lfw_people(root)
    assert list(people) == ["B_Two", "C_Three"]
    assert [p.name for p in people["C_Three"]] == [f"C_Three_000{i}.png" for i in (1, 2, 3)]
    assert list(pd_.lfw_people(root / "images_deepfunneled", 3)) == ["C_Three"]
    with pytest.raises(AnonbenchError, match=r"LFW folder not found: .*nowhere"):
        pd_.lfw_people(tmp_path / "nowhere")


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 128))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_match_filter_and_calibration() -> None:
    rng = np.random.default_rng(0)
    people = _unit(rng, 4)  # random unit vectors are ~1.41 apart
    lfw = {f"p{i}": [people[i] + 0.02 * rng.normal(size=128) for _ in range(3)] for i in range(4)}
    test = {"t0": [people[2] + 0.02 * rng.normal(size=128)], "t1": [_unit(rng, 1)[0]]}
    names, means = pd_.mean_descriptors(lfw)
    tn, tm = pd_.mean_descriptors(test)
    dropped = pd_.match_filter(names, means, tn, tm, 0.6)
    assert list(dropped) == ["p2"] and dropped["p2"][0] == "t0" and dropped["p2"][1] < 0.6
    assert pd_.match_filter(names, means, [], np.zeros((0, 128)), 0.6) == {}
    cal = pd_.calibrate(lfw, 0.6, n_query=2, n_ref=1, gallery=2)
    assert cal["same_person_people"] == 4 and cal["same_person_below"] == 1.0
    assert cal["null_people"] == 4 and cal["null_below"] == 0.0
    assert pd_.calibrate(lfw, 0.6)["same_person_people"] == 0  # nobody has 3 + 5 images


class _StubSource:
    """FaceSource without dlib: the box is the image's centre square (none for a black image),
    the descriptor a unit vector chosen by the image's first pixel value."""

    def __init__(self, cache_dir: str | None = None) -> None:
        self.vectors = _unit(np.random.default_rng(1), 256)

    def box(self, path: Path):
        import cv2

        img = cv2.imread(str(path))[:, :, ::-1].copy()
        if int(img.max()) == 0:
            return img, None
        return img, (10.0, 10.0, 30.0, 30.0)

    def descriptor(self, img: np.ndarray, box) -> np.ndarray:
        return self.vectors[int(img[0, 0, 0]) // 50]


def test_prepare_drops_test_matches_and_never_holds_a_test_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    lfw = _lfw(tmp_path / "lfw", {"Kept_One": 3, "Test_Twin": 2, "Lonely": 2})
    # descriptor vector index = first pixel // 50: Kept_One images 10, 20, 30 -> vector 0;
    # Test_Twin repainted to 125 -> vector 2, the same as celeba test identity "7"
    for f in (lfw / "images_deepfunneled" / "Test_Twin").iterdir():
        cv2.imwrite(str(f), np.full((40, 40, 3), 125, np.uint8))
    # Lonely: one image black (no face) -> one face left -> left out as well
    lonely = sorted((lfw / "images_deepfunneled" / "Lonely").iterdir())
    cv2.imwrite(str(lonely[0]), np.zeros((40, 40, 3), np.uint8))
    cv2.imwrite(str(lonely[1]), np.full((40, 40, 3), 175, np.uint8))
    cel = tmp_path / "cel"
    cel.mkdir()
    recs = []
    for ident, value in (("7", 125), ("8", 225), ("9", 230)):
        for i in range(2):
            p = cel / f"{ident}_{i}.png"
            cv2.imwrite(str(p), np.full((50, 40, 3), value, np.uint8))
            recs.append(SimpleNamespace(identity=ident, path=str(p)))
    monkeypatch.setattr(pd_, "FaceSource", _StubSource)
    monkeypatch.setattr(pd_, "celeba_split", lambda root, s, f: (recs, ["8", "9"], ["7"]))
    out = tmp_path / "prep" / "data.npz"
    meta = pd_.prepare(lfw, cel, out, size=pf.TRAIN_SIZE, say=lambda m: None, quiet=True)
    assert list(meta["lfw_dropped_as_celeba_test"]) == ["lfw:Test_Twin"]
    assert meta["lfw_people_used"] == 1 and meta["lfw_images_used"] == 3
    assert meta["lfw_images_without_face"] == 1
    assert meta["identities"] == 3 and meta["images"] == 7 and meta["test_identities"] == ["7"]
    crops, labels, meta2 = pt.load_data(out)
    assert crops.shape == (7, pf.TRAIN_SIZE, pf.TRAIN_SIZE, 3) and meta2 == json.loads(
        json.dumps(meta)
    )
    assert sorted(set(labels)) == ["celeba:8", "celeba:9", "lfw:Kept_One"]
    assert not list(out.parent.glob(".*tmp"))  # the atomic write left nothing behind


def test_epoch_order_caps_and_is_a_function_of_seed_and_epoch() -> None:
    y = np.array([0] * 10 + [1] * 2 + [2] * 3)
    a = pt.epoch_order(y, 4, 0, 5)
    assert len(a) == 4 + 2 + 3 and np.bincount(y[a]).tolist() == [4, 2, 3]
    assert np.array_equal(a, pt.epoch_order(y, 4, 0, 5))
    assert not np.array_equal(a, pt.epoch_order(y, 4, 0, 6))
    assert len(set(a)) == len(a)


def _data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 12
    crops = rng.integers(0, 255, (n, pf.TRAIN_SIZE, pf.TRAIN_SIZE, 3), dtype=np.uint8)
    labels = np.array([f"lfw:P{i % 3}" for i in range(n)])
    meta = {"test_identities": ["77"], "crop": pf.CROP_VERSION}
    path = tmp_path / "data.npz"
    pd_.write_npz_atomic(path, crops=crops, labels=labels, meta=np.array(json.dumps(meta)))
    return path


def _cfg(data: Path, out: Path) -> pt.V2Config:
    return pt.V2Config(str(data), str(out), epochs=2, batch_size=4, cap=3, keep_minutes=0)


def test_resume_continues_exactly_and_status_counts(tmp_path: Path) -> None:
    data = _data(tmp_path)
    full = pt.load_train_checkpoint(pt.train(_cfg(data, tmp_path / "a"), progress=False))
    assert full["step"] == 2 * (9 // 4)
    part = tmp_path / "b"
    pt.train(_cfg(data, part), progress=False, max_steps=1)
    s1 = json.loads((part / "status.json").read_text())
    assert s1["state"] == "stopped" and s1["step"] == 1
    with pytest.raises(AnonbenchError, match="--resume"):
        pt.train(_cfg(data, part), progress=False)
    resumed = pt.load_train_checkpoint(pt.train(_cfg(data, part), resume=True, progress=False))
    s2 = json.loads((part / "status.json").read_text())
    assert s2["state"] == "finished" and s2["step"] == 4 and s2["cpu_seconds"] > s1["cpu_seconds"]
    for k, v in full["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k
    assert torch.equal(full["proxies"], resumed["proxies"])
    rows = (part / "losses.csv").read_text().splitlines()
    assert len(rows) == 1 + 4


def test_refuses_data_holding_a_test_identity(tmp_path: Path) -> None:
    crops = np.zeros((8, pf.TRAIN_SIZE, pf.TRAIN_SIZE, 3), np.uint8)
    labels = np.array(["celeba:77", "lfw:A"] * 4)
    meta = np.array(json.dumps({"test_identities": ["77"]}))
    pd_.write_npz_atomic(tmp_path / "d.npz", crops=crops, labels=labels, meta=meta)
    with pytest.raises(AnonbenchError, match="test identities"):
        pt.train(_cfg(tmp_path / "d.npz", tmp_path / "o"), progress=False)
    with pytest.raises(AnonbenchError, match="prepared data not found"):
        pt.load_data(tmp_path / "missing.npz")


def test_recall_at_1_leave_one_out() -> None:
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.8, 0.2]], np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # nearest others (angles 0, 6.3, 90, 83.7, 14 degrees): 0->1, 1->0, 2->3, 3->2, 4->1
    assert pt.recall_at_1(emb, ["a", "a", "c", "c", "a"]) == pytest.approx(100.0)
    assert pt.recall_at_1(emb, ["a", "b", "c", "c", "a"]) == pytest.approx(40.0)


def test_export_loads_in_the_attacker_with_bare_celeba_classes(tmp_path: Path) -> None:
    net = pf.build_net(128)
    ckpt = {
        "step": 3,
        "classes": ["celeba:12", "lfw:Some_One"],
        "config": {"dim": 128, "data": "x", "out": "y", "epochs": 1},
        "state_dict": net.state_dict(),
    }
    out = tmp_path / "exp" / pf.WEIGHTS.name
    pt.export_v2(ckpt, {"test_identities": ["5"], "images": 9}, out)
    att = pf.FaceProxyNCAAttacker(checkpoint=str(out))
    assert att.classes == ["12", "lfw:Some_One"]
    crops = np.zeros((2, 112, 112, 3), np.uint8)
    want = pt.embed(net.state_dict(), crops)
    got = att.embed_crops(crops)
    assert np.abs(want - got).max() < 0.05  # fp16 export against float32


def test_script_quality_logs_a_row_per_checkpoint(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "pnca_face_v2_script", Path(__file__).parents[1] / "benchmarks" / "pnca_face_v2.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "run"
    cfg = pt.V2Config(str(_data(tmp_path)), str(out), epochs=1, batch_size=4, cap=3)
    last = pt.train(cfg, progress=False)  # keep_minutes 30: the final snapshot is kept
    snaps = sorted((out / "snapshots").glob("step_*.pt"))
    assert [p.name for p in snaps] == ["step_0000002.pt"]
    held = tmp_path / "held.npz"
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 255, (6, 112, 112, 3), dtype=np.uint8)
    pd_.write_npz_atomic(held, crops=crops, ids=np.array(list("aabbcc")))
    common = ["--heldout", str(held), "--log-to", str(out)]
    assert script.main(["quality", "--checkpoint", str(last), *common]) == 0
    assert script.main(["quality", "--checkpoint", str(out / "snapshots"), *common]) == 0
    assert script.main(["quality", "--checkpoint", str(out / "snapshots"), *common]) == 0
    import csv

    rows = list(csv.DictReader(open(out / "quality.csv")))
    assert [r["checkpoint"] for r in rows] == [str(last), str(snaps[0])]  # no snapshot twice
    assert all(r["step"] == "2" and r["n"] == "6" and r["cpu_hours"] for r in rows)
    assert 0 <= float(rows[0]["recall1_original"]) <= 100
