"""The produce/evaluate split: output stores, folder: methods, dataset specs, reuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anonbench.cli import main
from anonbench.data.datasets import open_dataset, parse_spec
from anonbench.errors import AnonbenchError


def _run(argv: list[str]) -> int:
    return main([*argv, "--quiet", "--workers", "1"])


def test_dataset_specs(fixtures):
    assert parse_spec(None, "lfw") == ("lfw", None)
    assert parse_spec("celeba:/x", "lfw") == ("celeba", "/x")
    assert parse_spec("/some/dir", "celeba") == ("celeba", "/some/dir")
    with pytest.raises(AnonbenchError, match="unknown dataset kind 'imagenet'"):
        parse_spec("imagenet:/x", "lfw")
    ds = open_dataset(f"folders:{fixtures / 'identity_folders'}")
    assert ds.kind == "folders" and ds.label == "identity_folders"
    assert all((ds.image_root / r.key).is_file() for r in ds.records)
    lfw = open_dataset(str(fixtures / "lfw_tiny"), "lfw")
    assert lfw.label == "lfw_tiny" and {r.key for r in lfw.records} >= {
        "Abdullah_Gul/Abdullah_Gul_0001.jpg"
    }


def test_produce_then_folder_scores_like_the_method(fixtures, tmp_path):
    """`produce` writes lossless outputs at the dataset's relative paths; scoring that folder
    gives exactly the method's own numbers, pair by pair."""
    root = fixtures / "lfw_tiny"
    cache, out, d = tmp_path / "c", tmp_path / "run", tmp_path / "blur-out"
    assert (
        _run(
            [
                "produce",
                "--method",
                "blur17",
                "--data",
                f"lfw:{root}",
                "--out",
                str(d),
                "--cache-dir",
                str(cache),
            ]
        )
        == 0
    )
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["method"] == "blur17" and manifest["config"]["kernel"] == 17
    for key, e in manifest["images"].items():
        assert (d / e["file"]).is_file() and e["file"] == str(Path(key).with_suffix(".png"))
        if e["faces"]:
            assert e["changed"] is not None and e["regions"][0] is not None
    assert (
        _run(
            [
                "run",
                "--methods",
                f"blur17,mine=folder:{d}",
                "--protocol",
                "lfw",
                "--data-root",
                str(root),
                "--out",
                str(out),
                "--cache-dir",
                str(cache),
            ]
        )
        == 0
    )
    df = pd.read_csv(out / "results.csv")
    for metric in ("tar_far_1e-3", "accuracy", "embedder_no_face", "faces_missed"):
        a = df[(df.method == "blur17") & (df.metric == metric)].value.item()
        b = df[(df.method == "mine") & (df.metric == metric)].value.item()
        assert a == b, metric
    s1 = pd.read_csv(out / "scores" / "lfw" / "blur17.csv")
    s2 = pd.read_csv(out / "scores" / "lfw" / "mine.csv")
    pd.testing.assert_frame_equal(s1, s2)
    assert len(s1) == 4
    # and the folder holds real anonymized outputs (not a vacuous equality of originals)
    from anonbench.data.images import read_rgb

    changed = [
        k
        for k, e in manifest["images"].items()
        if e["faces"]
        and (read_rgb(d / e["file"]) != read_rgb(root / "images_deepfunneled" / k)).any()
    ]
    assert changed and len(changed) == sum(bool(e["faces"]) for e in manifest["images"].values())


def test_missing_output_is_a_leak(fixtures, tmp_path):
    root = fixtures / "lfw_tiny"
    cache, d = tmp_path / "c", tmp_path / "out"
    assert (
        _run(
            [
                "produce",
                "--method",
                "mask",
                "--data",
                f"lfw:{root}",
                "--out",
                str(d),
                "--cache-dir",
                str(cache),
            ]
        )
        == 0
    )
    # drop the output of one second image: it must be scored as its original and listed
    gone = "Abdul_Rahman/Abdul_Rahman_0001.png"
    (d / gone).unlink()
    out = tmp_path / "run"
    assert (
        _run(
            [
                "run",
                "--methods",
                f"folder:{d}",
                "--protocol",
                "lfw",
                "--data",
                str(root),
                "--out",
                str(out),
                "--cache-dir",
                str(cache),
            ]
        )
        == 0
    )
    df = pd.read_csv(out / "results.csv")
    missed = df[df.metric == "faces_missed"]
    assert missed.method.item() == "out" and missed.value.item() == 1
    listed = pd.read_csv(out / "missed" / "lfw" / "out.csv")
    assert list(listed.key) == ["Abdul_Rahman/Abdul_Rahman_0001.jpg"]
    assert df[df.metric == "tar_far_1e-3"].n.item() == 4  # the pair stays in the metric


def test_store_key_follows_method_config_and_targets():
    from anonbench.produce import store_id
    from anonbench.registry import METHODS

    b9, b17 = METHODS.create("blur9"), METHODS.create("blur17")
    assert store_id(b9, "blur9", None, "a") != store_id(b17, "blur17", None, "a")
    assert store_id(b9, "blur9", None, "a") != store_id(b9, "blur9", None, "b")
    assert store_id(b9, "blur9", None, "a") != store_id(b9, "blur9", {"k": 1}, "a")
    assert store_id(b9, "blur9", {"k": 1}, "a") != store_id(b9, "blur9", {"k": 2}, "a")
    assert store_id(b9, "blur9", None, "a") == store_id(METHODS.create("blur9"), "blur9", None, "a")


def test_outputs_are_produced_once_across_protocols_and_reruns(fixtures, tmp_path, monkeypatch):
    """celeba then landmark-attack on the same data: the method's outputs are made once."""
    import anonbench.produce as produce

    calls: list[int] = []
    real = produce.anonymize_batch

    def counting(method, images, *a, **k):
        calls.append(len(images))
        return real(method, images, *a, **k)

    monkeypatch.setattr(produce, "anonymize_batch", counting)
    data, cache = f"celeba:{fixtures / 'celeba_small'}", tmp_path / "c"
    common = ["--data", data, "--cache-dir", str(cache), "--option", "pnca_epochs=1"]
    assert (
        _run(
            [
                "run",
                "--methods",
                "pixelate8",
                "--protocol",
                "celeba",
                *common,
                "--option",
                "recognizers=dlib-resnet",
                "--option",
                "detectors=dlib-hog",
                "--option",
                "fid=0",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    first = sum(calls)
    assert first > 0
    assert (
        _run(
            [
                "run",
                "--methods",
                "pixelate8",
                "--protocol",
                "landmark-attack",
                *common,
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    assert sum(calls) == first  # nothing produced again
    info = json.loads((tmp_path / "b" / "run.json").read_text())
    assert info["methods"]["pixelate8"]["store"]["store"]


def test_bad_options_and_flags_are_one_line_errors(fixtures, tmp_path, capsys):
    data = ["--data", f"celeba:{fixtures / 'celeba_small'}", "--out", str(tmp_path / "o")]
    assert (
        _run(
            [
                "run",
                "--methods",
                "blur9",
                "--protocol",
                "celeba",
                *data,
                "--option",
                "detectr=dlib-hog",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown option 'detectr'" in err and "did you mean 'detectors'" in err
    assert _run(["run", "--methods", "blur9", "--protocol", "celeba", *data, "--folds", "1"]) == 2
    assert "--folds does not apply to protocol celeba" in capsys.readouterr().err
    assert (
        _run(
            [
                "run",
                "--methods",
                "blur9",
                "--protocol",
                "lfw",
                "--data",
                f"celeba:{fixtures / 'celeba_small'}",
            ]
        )
        == 2
    )
    assert "runs on lfw:DIR data" in capsys.readouterr().err
    assert _run(["run", "--methods", "folder:/no/such/dir", "--protocol", "lfw"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert _run(["run", "--methods", "blur9", "--protocol", "lfw", "--device", "tpu"]) == 2
    assert "--device 'tpu'" in capsys.readouterr().err


def _tight_crops(src: Path, dst: Path) -> int:
    """Identity folders of 112x112 crops of each image's dlib HOG box (as a user's tight
    face crops would be)."""
    import cv2

    from anonbench.data.celeba import load_celeba
    from anonbench.data.images import read_rgb
    from anonbench.registry import DETECTORS

    hog = DETECTORS.create("dlib-hog")
    n = 0
    for r in load_celeba(src).records:
        img = read_rgb(r.path)
        faces = hog.detect(img)
        if not faces:
            continue
        x0, y0, x1, y1 = (round(v) for v in faces[0].box)
        crop = img[max(0, y0) : y1, max(0, x0) : x1]
        crop = cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA)
        out = dst / r.identity / Path(r.key).with_suffix(".png").name
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        n += 1
    return n


def test_tight_crops_are_scored_on_their_own_geometry(fixtures, tmp_path):
    """A folder of tight 112-pixel crops: the originals' faces are found and the recognizer
    embeds faces, not a box from another dataset's geometry."""
    crops = tmp_path / "crops"
    n = _tight_crops(fixtures / "celeba_small", crops)
    assert n >= 12
    out = tmp_path / "run"
    assert (
        _run(
            [
                "run",
                "--methods",
                "original",
                "--protocol",
                "celeba",
                "--data",
                f"folders:{crops}",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "c"),
                "--option",
                "recognizers=dlib-resnet",
                "--option",
                "detectors=retinaface",
                "--option",
                "fid=0",
            ]
        )
        == 0
    )
    df = pd.read_csv(out / "results.csv")
    assert set(df.dataset) == {"crops"}
    nd = df[(df.metric == "original_not_detected") & (df.evaluator == "retinaface")]
    assert nd.value.item() <= 0.05 * nd.n.item()
    rate = df[(df.metric == "detection_rate") & (df.evaluator == "retinaface")].value.item()
    assert rate == 100.0
    recall = df[(df.metric == "recall_at_1") & (df.evaluator == "dlib-resnet")].value.item()
    assert recall > 90
    info = json.loads((out / "run.json").read_text())
    assert info["protocol"]["details"]["celeba"]["fallback_box_relative"] is not None


def test_stored_outputs_are_lossless(fixtures, tmp_path):
    """Evaluating the stored PNG gives the very array anonymization made in memory."""
    from anonbench.anonymize import anonymize_image
    from anonbench.data.images import read_rgb
    from anonbench.evaluate import Originals
    from anonbench.faces.analysis import FaceAnalyzer
    from anonbench.produce import produce
    from anonbench.registry import METHODS

    ds = open_dataset(str(fixtures / "lfw_tiny"), "lfw")
    method = METHODS.create("pixelate16")
    org = Originals(str(tmp_path / "c"))
    store = produce(
        method,
        "pixelate16",
        ds.records,
        org.analyze(ds.records, "a"),
        cache_dir=tmp_path / "c",
        quiet=True,
    )
    r = ds.records[0]
    img = read_rgb(r.path)
    mem = anonymize_image(method, img, FaceAnalyzer()(img), r.key)
    assert np.array_equal(store.load(r), mem)
    shutil.rmtree(tmp_path / "c")
